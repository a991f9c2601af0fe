//! The printed report: markdown sections with tables, number formatting, and the goals checklist.

use std::fmt::Write as _;

/// A markdown table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    pub(crate) headers: Vec<String>,
    pub(crate) rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|header| (*header).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The table as markdown, columns padded so that it also reads well as plain text. A `|` in a
    /// cell is escaped; missing cells are left empty.
    pub(crate) fn to_markdown(&self) -> String {
        let columns = self.headers.len().max(self.rows.iter().map(Vec::len).max().unwrap_or(0));
        let cell = |row: &[String], column: usize| -> String {
            row.get(column).map(|text| text.replace('|', "\\|")).unwrap_or_default()
        };
        let widths: Vec<usize> = (0..columns)
            .map(|column| {
                std::iter::once(&self.headers)
                    .chain(&self.rows)
                    .map(|row| cell(row, column).chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(3)
            })
            .collect();
        let line = |row: &[String]| -> String {
            let cells: Vec<String> = (0..columns)
                .map(|column| format!("{:<width$}", cell(row, column), width = widths[column]))
                .collect();
            format!("| {} |\n", cells.join(" | "))
        };
        let mut text = line(&self.headers);
        let rule: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
        let _ = writeln!(text, "| {} |", rule.join(" | "));
        for row in &self.rows {
            text.push_str(&line(row));
        }
        text
    }
}

/// One part of the report: a heading, tables, and notes under them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Section {
    pub(crate) title: String,
    pub(crate) tables: Vec<Table>,
    pub(crate) notes: Vec<String>,
}

impl Section {
    pub(crate) fn new(title: impl Into<String>) -> Self {
        Self { title: title.into(), ..Self::default() }
    }

    pub(crate) fn to_markdown(&self) -> String {
        let mut text = format!("### {}\n\n", self.title);
        for table in &self.tables {
            text.push_str(&table.to_markdown());
            text.push('\n');
        }
        for note in &self.notes {
            let _ = writeln!(text, "- {note}");
        }
        if !self.notes.is_empty() {
            text.push('\n');
        }
        text
    }
}

/// A goal from the benchmark issue, and whether this run met it.
#[derive(Debug, Clone)]
pub(crate) struct Goal {
    pub(crate) name: String,
    pub(crate) target: String,
    pub(crate) measured: String,
    /// `None` for a measure the issue sets no target for.
    pub(crate) met: Option<bool>,
}

pub(crate) fn goals_table(goals: &[Goal]) -> Table {
    let mut table = Table::new(&["goal", "target", "measured", "met"]);
    for goal in goals {
        let verdict = match goal.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "no target",
        };
        table.push(vec![
            goal.name.clone(),
            goal.target.clone(),
            goal.measured.clone(),
            verdict.to_owned(),
        ]);
    }
    table
}

/// Milliseconds with a precision that suits their size: `0.016`, `3.42`, `48.1`, `3606`.
pub(crate) fn milliseconds(value: f64) -> String {
    if value.is_nan() {
        "–".to_owned()
    } else if value.abs() < 0.1 {
        format!("{value:.3}")
    } else if value.abs() < 10.0 {
        format!("{value:.2}")
    } else if value.abs() < 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

/// A difference in milliseconds with its sign: `+12.3`, `-880`.
pub(crate) fn signed_milliseconds(value: f64) -> String {
    if value.is_nan() {
        "–".to_owned()
    } else if value < 0.0 {
        format!("-{}", milliseconds(-value))
    } else {
        format!("+{}", milliseconds(value))
    }
}

/// A ratio such as `1.03×` or `11.2×`.
pub(crate) fn ratio(value: f64) -> String {
    if value.is_nan() {
        "–".to_owned()
    } else if value < 10.0 {
        format!("{value:.2}×")
    } else {
        format!("{value:.1}×")
    }
}

/// A median with its range, `330 (312–361)`.
pub(crate) fn median_and_range(summary: Option<crate::statistics::Summary>) -> String {
    match summary {
        Some(summary) => format!(
            "{} ({}–{})",
            milliseconds(summary.median),
            milliseconds(summary.minimum),
            milliseconds(summary.maximum)
        ),
        None => "–".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_padded_markdown_with_escaped_pipes() {
        let mut table = Table::new(&["app", "median ms"]);
        table.push(vec!["hello".into(), "330".into()]);
        table.push(vec!["a|b".into()]);
        assert_eq!(
            table.to_markdown(),
            "| app   | median ms |\n\
             | ----- | --------- |\n\
             | hello | 330       |\n\
             | a\\|b  |           |\n"
        );
    }

    #[test]
    fn numbers_read_at_their_scale() {
        assert_eq!(milliseconds(0.01634), "0.016");
        assert_eq!(milliseconds(3.4217), "3.42");
        assert_eq!(milliseconds(48.14), "48.1");
        assert_eq!(milliseconds(3606.4), "3606");
        assert_eq!(signed_milliseconds(-879.4), "-879");
        assert_eq!(signed_milliseconds(12.34), "+12.3");
        assert_eq!(ratio(1.034), "1.03×");
        assert_eq!(ratio(11.24), "11.2×");
        let summary = crate::statistics::Summary::of(&[330.0, 312.0, 361.0]);
        assert_eq!(median_and_range(summary), "330 (312–361)");
    }

    #[test]
    fn goals_say_when_they_are_missed() {
        let goals = [Goal {
            name: "swap".into(),
            target: "≤ 5 ms".into(),
            measured: "7.1 ms".into(),
            met: Some(false),
        }];
        assert!(goals_table(&goals).to_markdown().contains("| **no** |"));
    }
}
