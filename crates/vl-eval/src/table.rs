//! Result tables as Markdown (for papers' supplementary material and READMEs) and CSV (for
//! spreadsheets and pandas), built from one [`Table`] so the two never disagree.

/// A table of already formatted cells.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// Column headers.
    pub headers: Vec<String>,
    /// Right-align a column in Markdown (numbers); one per header, missing = left.
    pub numeric: Vec<bool>,
    /// Rows; a short row is padded with empty cells.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers; columns after the first are numeric.
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        let headers: Vec<String> = headers.into_iter().map(Into::into).collect();
        let numeric = (0..headers.len()).map(|i| i > 0).collect();
        Self {
            headers,
            numeric,
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn push<S: Into<String>>(&mut self, row: impl IntoIterator<Item = S>) {
        self.rows.push(row.into_iter().map(Into::into).collect());
    }

    fn cell(row: &[String], i: usize) -> &str {
        row.get(i).map_or("", String::as_str)
    }

    /// GitHub-flavoured Markdown; `|` in cells is escaped.
    pub fn to_markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|");
        let mut out = format!(
            "| {} |\n|{}\n",
            self.headers
                .iter()
                .map(|h| esc(h))
                .collect::<Vec<_>>()
                .join(" | "),
            (0..self.headers.len())
                .map(|i| if self.numeric.get(i) == Some(&true) {
                    "---:|"
                } else {
                    "---|"
                })
                .collect::<String>()
        );
        for row in &self.rows {
            let cells: Vec<String> = (0..self.headers.len())
                .map(|i| esc(Self::cell(row, i)))
                .collect();
            out += &format!("| {} |\n", cells.join(" | "));
        }
        out
    }

    /// CSV (RFC 4180): cells with a comma, quote or line break are quoted, quotes doubled.
    pub fn to_csv(&self) -> String {
        let quote = |s: &str| {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        let line = |cells: Vec<&str>| cells.into_iter().map(quote).collect::<Vec<_>>().join(",");
        let mut out = line(self.headers.iter().map(String::as_str).collect()) + "\n";
        for row in &self.rows {
            out += &line(
                (0..self.headers.len())
                    .map(|i| Self::cell(row, i))
                    .collect(),
            );
            out.push('\n');
        }
        out
    }
}

/// `"mean ± std"` with one decimal, or `"—"` for no values.
pub fn mean_std_cell(values: &[f64]) -> String {
    if values.is_empty() {
        return "—".into();
    }
    let (m, s) = crate::metrics::mean_std(values);
    format!("{m:.1} ± {s:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_and_csv_hold_the_same_cells_and_escape_them() {
        let mut t = Table::new(["method", "acc (%)"]);
        t.push(["a|b", "1.0"]);
        t.push(["x, \"y\""]);
        assert_eq!(
            t.to_markdown(),
            "| method | acc (%) |\n|---|---:|\n| a\\|b | 1.0 |\n| x, \"y\" |  |\n"
        );
        assert_eq!(t.to_csv(), "method,acc (%)\na|b,1.0\n\"x, \"\"y\"\"\",\n");
    }

    #[test]
    fn mean_std_cell_formats_one_decimal_and_marks_missing_values() {
        assert_eq!(mean_std_cell(&[70.0, 72.0, 74.0]), "72.0 ± 2.0");
        assert_eq!(mean_std_cell(&[]), "—");
    }
}
