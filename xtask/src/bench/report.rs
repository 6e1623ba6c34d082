//! A benchmark report: rows of measurements, one column per system under test, the first column
//! being the reference; printed as a table and written as JSON and markdown.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// One measured quantity for every column.
#[derive(Clone, Debug)]
pub struct Row {
    /// Section of the table (e.g. "raw round trip, persistent connection").
    pub group: String,
    /// What was measured.
    pub name: String,
    /// Unit of the values.
    pub unit: &'static str,
    /// One value per column; `None` when not measured.
    pub values: Vec<Option<f64>>,
}

/// A whole report.
#[derive(Debug)]
pub struct Report {
    /// File stem under `target/bench/` and title.
    pub name: &'static str,
    /// Column names; the first is the reference the ratios divide by.
    pub columns: Vec<String>,
    /// Free-form facts about the run (calls, runs, machine).
    pub facts: Vec<(String, String)>,
    /// The rows, in print order.
    pub rows: Vec<Row>,
}

impl Report {
    /// An empty report with these columns.
    pub fn new(name: &'static str, columns: Vec<String>) -> Report {
        Report {
            name,
            columns,
            facts: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn add(&mut self, group: &str, name: &str, unit: &'static str, values: Vec<Option<f64>>) {
        self.rows.push(Row {
            group: group.to_string(),
            name: name.to_string(),
            unit,
            values,
        });
    }

    fn ratio_names(&self) -> Vec<String> {
        self.columns
            .iter()
            .skip(1)
            .map(|c| format!("{c}/{}", self.columns[0]))
            .collect()
    }

    fn ratios(row: &Row) -> Vec<Option<f64>> {
        let reference = row.values.first().copied().flatten();
        row.values
            .iter()
            .skip(1)
            .map(|v| match (v, reference) {
                (Some(v), Some(r)) if r > 0.0 => Some(v / r),
                _ => None,
            })
            .collect()
    }

    /// Plain-text table for the terminal.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let headers: Vec<String> = self
            .columns
            .iter()
            .cloned()
            .chain(self.ratio_names())
            .collect();
        let name_width = self
            .rows
            .iter()
            .map(|r| r.name.len() + r.unit.len() + 3)
            .max()
            .unwrap_or(10)
            .max(10);
        let mut group = "";
        for row in &self.rows {
            if row.group != group {
                group = &row.group;
                let _ = write!(out, "\n{:<name_width$}", group);
                for h in &headers {
                    let _ = write!(out, " {h:>14}");
                }
                out.push('\n');
            }
            let label = format!("{} ({})", row.name, row.unit);
            let _ = write!(out, "  {label:<w$}", w = name_width - 2);
            for v in &row.values {
                let _ = write!(out, " {:>14}", fmt_value(*v));
            }
            for r in Self::ratios(row) {
                let _ = write!(out, " {:>14}", fmt_ratio(r));
            }
            out.push('\n');
        }
        out
    }

    /// Markdown version of the table.
    pub fn markdown(&self) -> String {
        let mut out = format!("# bench {}\n\n", self.name);
        for (k, v) in &self.facts {
            let _ = writeln!(out, "- {k}: {v}");
        }
        out.push('\n');
        let _ = write!(out, "| group | measurement | unit |");
        for h in self.columns.iter().chain(self.ratio_names().iter()) {
            let _ = write!(out, " {h} |");
        }
        out.push_str("\n|---|---|---|");
        for _ in 0..self.columns.len() * 2 - 1 {
            out.push_str("---:|");
        }
        out.push('\n');
        for row in &self.rows {
            let _ = write!(out, "| {} | {} | {} |", row.group, row.name, row.unit);
            for v in &row.values {
                let _ = write!(out, " {} |", fmt_value(*v));
            }
            for r in Self::ratios(row) {
                let _ = write!(out, " {} |", fmt_ratio(r));
            }
            out.push('\n');
        }
        out
    }

    /// JSON version (hand-written: flat data, no serde needed).
    pub fn json(&self) -> String {
        let mut out = String::from("{\n");
        let _ = writeln!(out, "  \"benchmark\": {},", json_str(self.name));
        out.push_str("  \"facts\": {");
        for (i, (k, v)) in self.facts.iter().enumerate() {
            let _ = write!(
                out,
                "{}{}: {}",
                if i == 0 { "" } else { ", " },
                json_str(k),
                json_str(v)
            );
        }
        out.push_str("},\n  \"columns\": [");
        out.push_str(
            &self
                .columns
                .iter()
                .map(|c| json_str(c))
                .collect::<Vec<_>>()
                .join(", "),
        );
        out.push_str("],\n  \"rows\": [\n");
        for (i, row) in self.rows.iter().enumerate() {
            let values: Vec<String> = self
                .columns
                .iter()
                .zip(&row.values)
                .map(|(c, v)| format!("{}: {}", json_str(c), json_num(*v)))
                .collect();
            let ratios: Vec<String> = self
                .ratio_names()
                .iter()
                .zip(Self::ratios(row))
                .map(|(c, v)| format!("{}: {}", json_str(c), json_num(v)))
                .collect();
            let _ = writeln!(
                out,
                "    {{\"group\": {}, \"name\": {}, \"unit\": {}, \"values\": {{{}}}, \"ratios\": {{{}}}}}{}",
                json_str(&row.group),
                json_str(&row.name),
                json_str(row.unit),
                values.join(", "),
                ratios.join(", "),
                if i + 1 == self.rows.len() { "" } else { "," }
            );
        }
        out.push_str("  ]\n}\n");
        out
    }

    /// Writes `<dir>/<name>.json` and `<dir>/<name>.md`; returns both paths.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = dir.join(format!("{}.json", self.name));
        let md = dir.join(format!("{}.md", self.name));
        std::fs::write(&json, self.json())
            .with_context(|| format!("writing {}", json.display()))?;
        std::fs::write(&md, self.markdown())
            .with_context(|| format!("writing {}", md.display()))?;
        Ok((json, md))
    }
}

fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{r:.2}x"))
}

fn json_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.3}"),
        _ => "null".into(),
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_json_and_markdown() {
        let mut r = Report::new("t", vec!["swtpm".into(), "ukvtpm".into()]);
        r.facts.push(("calls".into(), "2000".into()));
        r.add("raw", "GetRandom \"32\"", "µs", vec![Some(10.0), Some(5.0)]);
        r.add("raw", "missing", "µs", vec![Some(10.0), None]);
        assert_eq!(Report::ratios(&r.rows[0]), vec![Some(0.5)]);
        let json = r.json();
        assert!(json.contains("\"ukvtpm/swtpm\": 0.500"), "{json}");
        assert!(json.contains("GetRandom \\\"32\\\""), "{json}");
        assert!(json.contains("\"ukvtpm\": null"), "{json}");
        assert!(
            r.markdown()
                .contains("| raw | missing | µs | 10.0 | - | - |")
        );
        assert!(r.table().contains("0.50x"));
    }
}
