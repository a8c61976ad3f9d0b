//! Markdown and number formatting of the binary's reports: thousands separators, metric cells
//! and the per-cohort test table that `uie-train eval` prints.

use std::fmt::Write as _;

use uie_train::metrics::TaskMetrics;
use uie_train::report::{EvalReport, SPARSE};

/// `1234567` → `"1,234,567"`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A metric with four decimals, `n/a` when absent or not finite.
pub fn fmt_metric(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.4}"),
        _ => "n/a".to_string(),
    }
}

/// The markdown of an evaluation: a table whose rows are all rows, then every cohort (the five,
/// then `sparse`), with the row count and, per task, AUC and logloss; then, when the report has
/// them, a table of GAUC per task with the users that counted. Tasks are taken from `overall`.
pub fn cohort_table(report: &EvalReport) -> String {
    let tasks: Vec<&str> = report.overall.iter().map(|m| m.task.as_str()).collect();
    let mut out = String::new();
    let mut header = String::from("| rows | n |");
    let mut rule = String::from("|---|---:|");
    for task in &tasks {
        let _ = write!(header, " AUC {task} | logloss {task} |");
        rule.push_str("---:|---:|");
    }
    let _ = writeln!(
        out,
        "{header}
{rule}"
    );
    let mut line = |name: &str, rows: usize, metrics: &[TaskMetrics]| {
        let _ = write!(out, "| {name} | {} |", thousands(rows));
        for task in &tasks {
            let m = metrics.iter().find(|m| m.task == *task);
            let _ = write!(
                out,
                " {} | {} |",
                fmt_metric(m.and_then(|m| m.auc)),
                fmt_metric(m.map(|m| m.logloss))
            );
        }
        out.push('\n');
    };
    let all_rows = report.overall.first().map(|m| m.n).unwrap_or(0);
    line("all", all_rows, &report.overall);
    for c in &report.cohorts {
        let name = if c.cohort == SPARSE {
            "sparse (0-20)".to_string()
        } else {
            c.cohort.clone()
        };
        line(&name, c.rows, &c.tasks);
    }
    if !report.gauc.is_empty() {
        out.push_str("\n| task | GAUC | users counted |\n|---|---:|---:|\n");
        for g in &report.gauc {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                g.task,
                fmt_metric(g.gauc),
                thousands(g.users)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use uie_train::report::{CohortMetrics, Gauc};

    #[test]
    fn cohort_table_lists_all_cohorts_and_gauc() {
        let m = |task: &str, auc: Option<f64>, logloss: f64, n: usize| TaskMetrics {
            task: task.into(),
            auc,
            logloss,
            n,
        };
        let report = EvalReport {
            overall: vec![
                m("watch", Some(0.75), 0.5, 12345),
                m("like", Some(0.7), 0.6, 12345),
            ],
            cohorts: vec![
                CohortMetrics {
                    cohort: "0".into(),
                    rows: 1000,
                    tasks: vec![
                        m("watch", Some(0.6), 0.65, 1000),
                        m("like", None, 0.3, 1000),
                    ],
                },
                CohortMetrics {
                    cohort: SPARSE.into(),
                    rows: 2500,
                    tasks: vec![
                        m("watch", Some(0.61), 0.64, 2500),
                        m("like", Some(0.55), f64::INFINITY, 2500),
                    ],
                },
            ],
            gauc: vec![Gauc {
                task: "watch".into(),
                gauc: Some(0.66666),
                users: 1234,
            }],
        };
        let table = cohort_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "| rows | n | AUC watch | logloss watch | AUC like | logloss like |"
        );
        assert_eq!(lines[1], "|---|---:|---:|---:|---:|---:|");
        assert_eq!(
            lines[2],
            "| all | 12,345 | 0.7500 | 0.5000 | 0.7000 | 0.6000 |"
        );
        assert_eq!(lines[3], "| 0 | 1,000 | 0.6000 | 0.6500 | n/a | 0.3000 |");
        assert_eq!(
            lines[4],
            "| sparse (0-20) | 2,500 | 0.6100 | 0.6400 | 0.5500 | n/a |"
        );
        assert_eq!(lines[5], "");
        assert_eq!(lines[8], "| watch | 0.6667 | 1,234 |");
        // Census-like: no cohorts, no GAUC, only the overall row.
        let census = EvalReport {
            overall: report.overall.clone(),
            ..EvalReport::default()
        };
        assert_eq!(cohort_table(&census).lines().count(), 3);
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
