//! Parse flags → load config → run command → exit code. Nothing else.

fn main() -> std::process::ExitCode {
    pluvo_warehouse::cli::main()
}
