//! The one table renderer of every list command.
//!
//! Contiv printed its lists through Go's `text/tabwriter` (min width 0, padding 2, pad with
//! spaces): a header row, a row of dashes, then one row per object, each column as wide as its
//! widest cell plus two spaces. Scripts and eyes are used to that layout, so [`tabwrite`] is a port
//! of tabwriter's column-block algorithm. One deliberate difference: trailing spaces are trimmed.

/// A list table: column headers, the dashes Contiv printed under each, and the rows.
pub struct Table {
    header: Vec<&'static str>,
    dashes: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// `columns`: (header, dashes) pairs, as Contiv printed them (its dashes do not always match
    /// the header's length).
    pub fn new(columns: &[(&'static str, &'static str)]) -> Self {
        Table {
            header: columns.iter().map(|c| c.0).collect(),
            dashes: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: ToString,
    {
        self.rows
            .push(cells.into_iter().map(|c| c.to_string()).collect());
    }

    pub fn render(&self) -> String {
        let mut lines = vec![self.header.join("\t"), self.dashes.join("\t")];
        lines.extend(self.rows.iter().map(|r| r.join("\t")));
        tabwrite(&lines)
    }
}

/// `Label: value` lines, as Contiv's `info` commands printed them (without trailing spaces
/// when a value is empty).
pub fn labeled(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(label, value)| format!("{}\n", format!("{label}: {value}").trim_end()))
        .collect()
}

/// Go's `%v` of a string list: `[a b c]`.
pub fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Aligns tab-separated lines as Go's `tabwriter.NewWriter(w, 0, _, 2, ' ', 0)` does. Each
/// tab ends a cell; the text after a line's last tab is not part of any column. A column block
/// is a run of consecutive lines that have a cell in that column; its width is its widest cell
/// plus 2. Each output line ends with a newline and has no trailing spaces.
pub fn tabwrite(lines: &[String]) -> String {
    let cells: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let mut out = String::new();
    let mut widths = Vec::new();
    format_block(&cells, &mut widths, 0, cells.len(), &mut out);
    out
}

const PADDING: usize = 2;

fn width(s: &str) -> usize {
    s.chars().count()
}

/// Whether `line` has a (tab-terminated) cell in `column`.
fn has_cell(line: &[&str], column: usize) -> bool {
    column + 1 < line.len()
}

fn format_block(
    lines: &[Vec<&str>],
    widths: &mut Vec<usize>,
    mut line0: usize,
    line1: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if !has_cell(&lines[this], column) {
            this += 1;
            continue;
        }
        // A column block starts here: print the lines before it with the known widths.
        write_lines(lines, widths, line0, this, out);
        line0 = this;
        let mut w = 0;
        while this < line1 && has_cell(&lines[this], column) {
            w = w.max(width(lines[this][column]) + PADDING);
            this += 1;
        }
        widths.push(w);
        format_block(lines, widths, line0, this, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, widths, line0, line1, out);
}

fn write_lines(
    lines: &[Vec<&str>],
    widths: &[usize],
    line0: usize,
    line1: usize,
    out: &mut String,
) {
    for line in &lines[line0..line1] {
        let mut text = String::new();
        for (j, cell) in line.iter().enumerate() {
            text.push_str(cell);
            if let Some(w) = widths.get(j) {
                for _ in width(cell)..*w {
                    text.push(' ');
                }
            }
        }
        out.push_str(text.trim_end_matches(' '));
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &[&str]) -> Vec<String> {
        s.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn aligns_like_go_tabwriter() {
        let t = tabwrite(&lines(&[
            "Tenant\tPolicy",
            "------\t------",
            "blue\tweb",
            "default\tdb",
        ]));
        assert_eq!(
            t,
            "Tenant   Policy\n------   ------\nblue     web\ndefault  db\n"
        );
    }

    #[test]
    fn empty_cells_keep_their_column() {
        let mut t = Table::new(&[("A", "-"), ("B", "-"), ("C", "-")]);
        t.row(["x", "", "z"]);
        assert_eq!(t.render(), "A  B  C\n-  -  -\nx     z\n");
    }

    #[test]
    fn one_cell_lines_end_a_column_block() {
        // Contiv's rule-ls: each table below a title line gets its own widths.
        let t = tabwrite(&lines(&[
            "Incoming:",
            "R\tPriority",
            "1\t1",
            "Outgoing:",
            "Rule\tP",
            "22\t3",
        ]));
        assert_eq!(
            t,
            "Incoming:\nR  Priority\n1  1\nOutgoing:\nRule  P\n22    3\n"
        );
    }

    #[test]
    fn shorter_rows_break_only_their_columns() {
        // Contiv's netprofile ls prints 4 cells for a profile without bandwidth, 5 otherwise.
        let t = tabwrite(&lines(&[
            "Name\tTenant\tBandwidth\tDSCP\tburst size",
            "------\t------\t---------\t--------\t----------",
            "slow\tblue\t10Mbps\t6\t100",
            "plain\tblue\t\t0",
        ]));
        assert_eq!(
            t,
            "Name    Tenant  Bandwidth  DSCP      burst size\n\
             ------  ------  ---------  --------  ----------\n\
             slow    blue    10Mbps     6         100\n\
             plain   blue               0\n"
        );
    }

    #[test]
    fn no_rows_prints_header_and_dashes() {
        let t = Table::new(&[("Tenant", "------"), ("Network", "-------")]);
        assert_eq!(t.render(), "Tenant  Network\n------  -------\n");
    }

    #[test]
    fn wide_characters_count_once() {
        let mut t = Table::new(&[("N", "-"), ("X", "-")]);
        t.row(["é", "1"]);
        assert_eq!(t.render(), "N  X\n-  -\né  1\n");
    }

    #[test]
    fn go_list_format() {
        assert_eq!(go_list(&["a=b".into(), "c=d".into()]), "[a=b c=d]");
        assert_eq!(go_list(&[]), "[]");
    }
}
