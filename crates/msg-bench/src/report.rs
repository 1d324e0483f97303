//! The figure table and its JSON form.

use serde::Serialize;

/// One measured figure, for msg and (where comparable) mosquitto.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub scenario: &'static str,
    pub name: String,
    pub unit: &'static str,
    /// Whether a larger value is better (throughput) or worse (latency,
    /// memory); `None` for a count that is neither (how refusals split).
    pub higher_is_better: Option<bool>,
    pub msg: Option<f64>,
    pub mosquitto: Option<f64>,
    /// Peak resident memory of each server during the scenario, KiB.
    pub msg_peak_rss_kib: Option<u64>,
    pub mosquitto_peak_rss_kib: Option<u64>,
}

impl Figure {
    pub fn new(scenario: &'static str, name: impl Into<String>, unit: &'static str) -> Self {
        Self {
            scenario,
            name: name.into(),
            unit,
            higher_is_better: Some(true),
            msg: None,
            mosquitto: None,
            msg_peak_rss_kib: None,
            mosquitto_peak_rss_kib: None,
        }
    }

    pub fn lower_is_better(mut self) -> Self {
        self.higher_is_better = Some(false);
        self
    }

    /// A count that is neither better larger nor smaller.
    pub fn neutral(mut self) -> Self {
        self.higher_is_better = None;
        self
    }

    pub fn values(mut self, msg: Option<f64>, mosquitto: Option<f64>) -> Self {
        self.msg = msg;
        self.mosquitto = mosquitto;
        self
    }

    pub fn rss(mut self, msg: Option<u64>, mosquitto: Option<u64>) -> Self {
        self.msg_peak_rss_kib = msg;
        self.mosquitto_peak_rss_kib = mosquitto;
        self
    }

    /// msg ÷ mosquitto.
    pub fn ratio(&self) -> Option<f64> {
        match (self.msg, self.mosquitto) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        }
    }
}

#[derive(Serialize)]
struct Report<'a> {
    machine: String,
    figures: Vec<JsonFigure<'a>>,
}

#[derive(Serialize)]
struct JsonFigure<'a> {
    #[serde(flatten)]
    figure: &'a Figure,
    ratio: Option<f64>,
}

pub fn json(figures: &[Figure]) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&Report {
        machine: crate::procfs::machine(),
        figures: figures
            .iter()
            .map(|figure| JsonFigure {
                figure,
                ratio: figure.ratio(),
            })
            .collect(),
    })
}

fn number(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.abs() >= 100.0 => group(v.round() as i64),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// 1234567 → "1,234,567".
fn group(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "-".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

pub fn table(figures: &[Figure]) -> String {
    let header = [
        "scenario",
        "figure",
        "unit",
        "msg",
        "mosquitto",
        "msg/mosq",
        "msg RSS MiB",
        "mosq RSS MiB",
    ];
    let rows: Vec<[String; 8]> = figures
        .iter()
        .map(|f| {
            let unit = match f.higher_is_better {
                Some(true) => format!("{} ↑", f.unit),
                Some(false) => format!("{} ↓", f.unit),
                None => f.unit.to_owned(),
            };
            [
                f.scenario.to_owned(),
                f.name.clone(),
                unit,
                number(f.msg),
                number(f.mosquitto),
                f.ratio().map_or_else(|| "-".into(), |r| format!("{r:.2}")),
                mib(f.msg_peak_rss_kib),
                mib(f.mosquitto_peak_rss_kib),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::from("|");
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            // Text left, numbers right.
            if i < 3 {
                out.push_str(&format!(" {cell}{} |", " ".repeat(pad)));
            } else {
                out.push_str(&format!(" {}{cell} |", " ".repeat(pad)));
            }
        }
        out.push('\n');
        out
    };
    let mut out = format!("machine: {}\n", crate::procfs::machine());
    out.push_str(&line(&header.map(String::from)));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(&rule));
    for row in &rows {
        out.push_str(&line(row));
    }
    out.push_str(
        "(↑ higher is better, ↓ lower is better; RSS = the server's peak resident memory during the scenario)\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(999), "999");
        assert_eq!(number(Some(1.234)), "1.23");
        assert_eq!(number(None), "-");
    }
}
