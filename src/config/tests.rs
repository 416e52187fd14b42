//! Tests of loading, precedence and validation.

use super::validate::*;
use super::*;

/// Issue 22: a configuration used from another folder finds its own warehouse.
#[test]
fn paths_in_the_file_are_relative_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("org");
    std::fs::create_dir(&sub).unwrap();
    let file = sub.join("pluvo-warehouse.toml");
    std::fs::write(
        &file,
        "[warehouse]\ndb = \"w.duckdb\"\nexport_dir = \"out\"\n",
    )
    .unwrap();
    let flags = Flags {
        config: Some(file.clone()),
        ..Flags::default()
    };
    let config = Config::load_with(&flags, |_| None).unwrap();
    assert_eq!(config.db, sub.join("w.duckdb"));
    assert_eq!(config.export_dir, sub.join("out"));
    // Flags and the environment stay relative to the current folder.
    let flagged = Config::load_with(
        &Flags {
            db: Some("x.duckdb".into()),
            ..flags.clone()
        },
        |_| None,
    )
    .unwrap();
    assert_eq!(flagged.db, PathBuf::from("x.duckdb"));
    let from_env =
        Config::load_with(&flags, |n| (n == "PLUVO_DB").then(|| "y.duckdb".into())).unwrap();
    assert_eq!(from_env.db, PathBuf::from("y.duckdb"));
    // An absolute path is kept.
    std::fs::write(&file, "[warehouse]\ndb = \"/tmp/abs.duckdb\"\n").unwrap();
    let config = Config::load_with(&flags, |_| None).unwrap();
    assert_eq!(config.db, PathBuf::from("/tmp/abs.duckdb"));
}

#[test]
fn default_scope_covers_every_push_operation() {
    for (what, scope) in PUSH_SCOPES {
        assert!(
            DEFAULT_SCOPE.split_whitespace().any(|s| s == *scope),
            "`{what}` needs `{scope}`, missing from DEFAULT_SCOPE"
        );
    }
}
use std::collections::HashMap;

fn load(file: Option<&str>, env: &[(&str, &str)], flags: Flags) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pluvo-warehouse.toml");
    if let Some(text) = file {
        std::fs::write(&path, text).unwrap();
    }
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let flags = Flags {
        config: Some(path),
        ..flags
    };
    if file.is_none() {
        return Config::load_with(
            &Flags {
                config: None,
                ..flags
            },
            |k| env.get(k).cloned(),
        );
    }
    Config::load_with(&flags, |k| env.get(k).cloned())
}

#[test]
fn env_wins_over_file_and_flags_win_over_env() {
    let file = "[pluvo]\nurl = \"https://file.pluvo.com\"\nclient_id = \"file-id\"\n";
    let env = [
        ("PLUVO_URL", "https://env.pluvo.com"),
        ("PLUVO_CLIENT_SECRET", "s3cret"),
    ];
    let cfg = load(Some(file), &env, Flags::default()).unwrap();
    let api = cfg.api(Access::Write).unwrap();
    assert_eq!(api.base_url.as_str(), "https://env.pluvo.com/");
    assert_eq!(api.client_id, "file-id");
    let flags = Flags {
        url: Some("https://flag.pluvo.com/".into()),
        ..Flags::default()
    };
    let api = load(Some(file), &env, flags)
        .unwrap()
        .api(Access::Write)
        .unwrap();
    assert_eq!(
        api.graphql_url().as_str(),
        "https://flag.pluvo.com/graphql/"
    );
    assert_eq!(
        api.token_url().as_str(),
        "https://flag.pluvo.com/oauth/token/"
    );
}

#[test]
fn missing_values_name_key_and_place() {
    let cfg = load(None, &[], Flags::default()).unwrap();
    let err = cfg.api(Access::Write).unwrap_err().to_string();
    assert!(
        err.contains("`pluvo.url`") && err.contains("PLUVO_URL"),
        "{err}"
    );
    let cfg = load(
        None,
        &[
            ("PLUVO_URL", "https://a.pluvo.com"),
            ("PLUVO_CLIENT_ID", "x"),
        ],
        Flags::default(),
    )
    .unwrap();
    let err = cfg.api(Access::Write).unwrap_err().to_string();
    assert!(err.contains("PLUVO_CLIENT_SECRET"), "{err}");
}

#[test]
fn malformed_values_name_their_source() {
    let cfg = load(None, &[("PLUVO_URL", "acme.pluvo.com")], Flags::default()).unwrap();
    let err = cfg.api(Access::Write).unwrap_err().to_string();
    assert!(
        err.contains("`pluvo.url`") && err.contains("environment variable `PLUVO_URL`"),
        "{err}"
    );
    let err = load(Some("[pluvo]\nurl = 3\n"), &[], Flags::default()).unwrap_err();
    assert!(err.to_string().contains("not valid TOML"), "{err}");
    let err = load(Some("[pluvo]\nurll = \"x\"\n"), &[], Flags::default()).unwrap_err();
    assert!(err.to_string().contains("unknown field `urll`"), "{err}");
    let err = load(Some("[http]\nmax_attempts = 0\n"), &[], Flags::default()).unwrap_err();
    assert!(err.to_string().contains("`http.max_attempts`"), "{err}");
}

#[test]
fn memory_limit_defaults_parses_and_refuses_nonsense() {
    let cfg = load(None, &[], Flags::default()).unwrap();
    assert_eq!(cfg.memory_limit, crate::store::WRITER_MEMORY_LIMIT);
    let set = |v: &str| {
        load(
            Some(&format!("[warehouse]\nmemory_limit = \"{v}\"\n")),
            &[],
            Flags::default(),
        )
    };
    assert_eq!(set("256 mb").unwrap().memory_limit, "256MB");
    assert_eq!(set("1.5GB").unwrap().memory_limit, "1.5GB");
    for bad in [
        "8MB",
        "16MB",
        "lots",
        "64",
        "64 apples",
        "'; DROP TABLE users; --",
    ] {
        let err = set(bad).unwrap_err().to_string();
        assert!(
            err.contains("`warehouse.memory_limit`") && err.contains("like \"64MB\""),
            "{bad}: {err}"
        );
    }
}

#[test]
fn secret_in_file_is_refused_without_echoing_it() {
    let err = load(
        Some("[pluvo]\nclient_secret = \"hunter2\"\n"),
        &[],
        Flags::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("PLUVO_CLIENT_SECRET"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn secrets_never_print() {
    let cfg = load(
        None,
        &[
            ("PLUVO_URL", "https://a.pluvo.com"),
            ("PLUVO_CLIENT_ID", "id"),
            ("PLUVO_CLIENT_SECRET", "hunter2"),
        ],
        Flags::default(),
    )
    .unwrap();
    let api = cfg.api(Access::Write).unwrap();
    assert!(!format!("{cfg:?} {api:?}").contains("hunter2"));
    assert_eq!(api.client_secret.expose(), "hunter2");
}

#[test]
fn base_url_is_normalised() {
    for (input, expected) in [
        ("https://acme.pluvo.com", "https://acme.pluvo.com/"),
        ("https://acme.pluvo.com/", "https://acme.pluvo.com/"),
        ("https://acme.pluvo.com/graphql/", "https://acme.pluvo.com/"),
        ("http://127.0.0.1:8700", "http://127.0.0.1:8700/"),
        ("http://127.1.2.3:8700", "http://127.1.2.3:8700/"),
        ("http://[::1]:8700", "http://[::1]:8700/"),
        ("http://localhost:8700", "http://localhost:8700/"),
    ] {
        assert_eq!(parse_base_url(input).unwrap().as_str(), expected);
    }
    for bad in [
        "acme.pluvo.com",
        "ftp://acme.pluvo.com",
        "http://acme.pluvo.com",
        "https://u:p@acme.pluvo.com",
        // Issue 17: a name that starts like a loopback address is still a name.
        "http://127.evil.example",
        "http://127.0.0.1.evil.example:8700",
        "http://localhost.evil.example",
    ] {
        assert!(parse_base_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn issue_17_reading_commands_request_no_write_scope() {
    let env = [
        ("PLUVO_URL", "https://a.pluvo.com"),
        ("PLUVO_CLIENT_ID", "id"),
        ("PLUVO_CLIENT_SECRET", "s"),
    ];
    let cfg = load(None, &env, Flags::default()).unwrap();
    assert_eq!(cfg.api(Access::Read).unwrap().scope, READ_SCOPE);
    assert_eq!(
        cfg.api(Access::Write).unwrap().scope,
        DEFAULT_SCOPE
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    );
    let file = "[pluvo]\nscope = \"users.read users.write groups.read\"\n";
    let cfg = load(Some(file), &env, Flags::default()).unwrap();
    assert_eq!(
        cfg.api(Access::Read).unwrap().scope,
        "users.read groups.read"
    );
    assert_eq!(
        cfg.api(Access::Write).unwrap().scope,
        "users.read users.write groups.read"
    );
    let file = "[pluvo]\nscope = \"users.write\"\n";
    let err = load(Some(file), &env, Flags::default())
        .unwrap()
        .api(Access::Read)
        .unwrap_err();
    assert!(err.to_string().contains("only write scopes"), "{err}");
}

/// Issue 21: named organisations, each with its URL, client, secret variable and warehouse
/// (relative to the file); the secret comes from the variable it names.
#[test]
fn organisations_resolve_with_their_own_secret_and_warehouse() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pluvo-warehouse.toml");
    std::fs::write(
        &file,
        "[pluvo]\nscope = \"users.read\"\n\n\
         [orgs.acme]\nurl = \"https://acme.pluvo.com\"\nclient_id = \"a\"\n\
         secret_env = \"ACME_SECRET\"\ndb = \"data/acme.duckdb\"\n\n\
         [orgs.globex]\nurl = \"https://globex.pluvo.com\"\nclient_id = \"g\"\n\
         secret_env = \"GLOBEX_SECRET\"\n",
    )
    .unwrap();
    let flags = Flags {
        config: Some(file.clone()),
        ..Flags::default()
    };
    let env = |k: &str| (k == "ACME_SECRET").then(|| "s3cret".to_string());
    let config = Config::load_with(&flags, env).unwrap();
    assert_eq!(config.org_names(), ["acme", "globex"]);
    assert!(!config.has_url());
    let acme = config.org("acme").unwrap();
    assert_eq!(acme.db, dir.path().join("data/acme.duckdb"));
    assert_eq!(acme.export_dir, dir.path().join("data/acme-export"));
    let api = acme.api(Access::Read).unwrap();
    assert_eq!(api.base_url.as_str(), "https://acme.pluvo.com/");
    assert_eq!(
        (api.client_id.as_str(), api.client_secret.expose()),
        ("a", "s3cret")
    );
    assert_eq!(api.scope, "users.read", "the shared scope");
    assert!(acme.orgs.is_empty() && acme.export_to.is_none());
    assert_eq!(
        config.org("globex").unwrap_err().to_string(),
        "the client secret of organisation `globex` is not set; export GLOBEX_SECRET (named by \
         `orgs.globex.secret_env`; secrets are read only from the environment)"
    );
    let globex = Config::load_with(&flags, |k| {
        k.ends_with("_SECRET").then(|| format!("{k}-value"))
    })
    .unwrap();
    assert_eq!(
        globex.org("globex").unwrap().db,
        dir.path().join("globex.duckdb")
    );
    let err = config.org("initech").unwrap_err().to_string();
    assert!(
        err.contains("`initech`") && err.contains("acme, globex"),
        "{err}"
    );
    // `--db` names one warehouse: refused with organisations, not silently ignored.
    let flagged = Config::load_with(
        &Flags {
            db: Some("x.duckdb".into()),
            ..flags.clone()
        },
        env,
    )
    .unwrap();
    let err = flagged.org("acme").unwrap_err().to_string();
    assert!(err.contains("flag `--db`"), "{err}");
}

#[test]
fn organisation_mistakes_name_the_key_and_never_echo_a_secret() {
    let org = |body: &str| {
        load(Some(&format!("[orgs.acme]\n{body}")), &[], Flags::default())
            .unwrap_err()
            .to_string()
    };
    let full = "url = \"https://a.pluvo.com\"\nclient_id = \"a\"\nsecret_env = \"A_SECRET\"\n";
    let err = org("client_id = \"a\"\nsecret_env = \"A_SECRET\"\n");
    assert!(
        err.contains("`orgs.acme.url`") && err.contains("not set"),
        "{err}"
    );
    let err = org("url = \"https://a.pluvo.com\"\nclient_id = \"a\"\n");
    assert!(err.contains("`orgs.acme.secret_env`"), "{err}");
    let err = org(&format!("{full}client_secret = \"hunter2\"\n"));
    assert!(
        err.contains("`orgs.acme.client_secret`") && !err.contains("hunter2"),
        "{err}"
    );
    let err = org("url = \"https://a.pluvo.com\"\nclient_id = \"a\"\nsecret_env = \"a secret\"\n");
    assert!(err.contains("not an environment variable name"), "{err}");
    let err = org("url = \"acme\"\nclient_id = \"a\"\nsecret_env = \"A\"\n");
    assert!(
        err.contains("`orgs.acme.url`") && err.contains("invalid"),
        "{err}"
    );
    // The name is a folder and a partition value: no `/`, `=`, upper case or leading digit.
    for name in ["\"a/b\"", "\"a=b\"", "Acme", "\"1acme\""] {
        let err = load(
            Some(&format!("[orgs.{name}]\n{full}")),
            &[],
            Flags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("not a usable organisation name"),
            "{name}: {err}"
        );
    }
    let two =
        format!("[orgs.a]\n{full}db = \"same.duckdb\"\n[orgs.b]\n{full}db = \"same.duckdb\"\n");
    let err = load(Some(&two), &[], Flags::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`orgs.b.db`") && err.contains("organisation `a`"),
        "{err}"
    );
}

#[test]
fn export_to_comes_from_the_file_or_the_environment() {
    let file = "[export]\nto = \"s3://bucket/from-file\"\n";
    let cfg = load(Some(file), &[], Flags::default()).unwrap();
    assert_eq!(cfg.export_to.unwrap().0, "s3://bucket/from-file");
    let cfg = load(
        Some(file),
        &[("PLUVO_EXPORT_TO", "gs://bucket/from-env")],
        Flags::default(),
    )
    .unwrap();
    assert_eq!(
        cfg.export_to,
        Some((
            "gs://bucket/from-env".to_string(),
            Source::Env("PLUVO_EXPORT_TO")
        ))
    );
    assert!(
        load(None, &[], Flags::default())
            .unwrap()
            .export_to
            .is_none()
    );
}
