//! What the commands share for output: the `--format` switch and one table printer, so
//! every command's tables look alike and a long value never shifts the columns after it.

use std::fmt;

/// `--format`: a table for people, JSON for scripts and monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// A table for people, the one every command prints with: a header line, columns as wide as
/// their widest value (numbers right-aligned), no borders. A long value widens its column
/// instead of shifting the ones after it, and lines are never wrapped, so `grep` and `cut`
/// see one row per line.
pub struct Table(comfy_table::Table);

impl Table {
    /// A table with these column headers; a header written `">name"` is right-aligned, for
    /// numbers.
    pub fn new(headers: &[&str]) -> Table {
        let mut table = comfy_table::Table::new();
        table
            .load_style(comfy_table::presets::NOTHING)
            .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
            .set_header(headers.iter().map(|h| h.trim_start_matches('>')));
        let last = headers.len().saturating_sub(1);
        for (i, header) in headers.iter().enumerate() {
            let column = table.column_mut(i).expect("a column per header");
            column.set_padding((0, if i == last { 0 } else { 2 }));
            if header.starts_with('>') {
                column.set_cell_alignment(comfy_table::CellAlignment::Right);
            }
        }
        Table(table)
    }

    /// Add a row: one value per column.
    pub fn row<I>(&mut self, cells: I) -> &mut Table
    where
        I: IntoIterator,
        I::Item: fmt::Display,
    {
        self.0
            .add_row(cells.into_iter().map(|c| c.to_string()).collect::<Vec<_>>());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Table {
    /// The table, each line without trailing spaces, ending in a newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.0.lines() {
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn a_long_value_widens_its_column_and_numbers_align_right() {
        let mut t = Table::new(&["table", ">rows", "note"]);
        t.row(["users", "7", ""]);
        t.row(["a_table_with_a_very_long_name", "1234567", "kept"]);
        let text = t.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        // Every row's second column ends at the same place.
        let end = |l: &str, v: &str| l.find(v).unwrap() + v.len();
        assert_eq!(end(lines[0], "rows"), end(lines[1], "7"), "{text}");
        assert_eq!(end(lines[1], "7"), end(lines[2], "1234567"), "{text}");
        assert!(lines.iter().all(|l| !l.ends_with(' ')), "{text:?}");
        assert!(lines[0].starts_with("table"), "{text}");
    }
}
