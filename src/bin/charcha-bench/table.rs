//! `charcha-bench table FILE.jsonl`: the comparison table of one
//! scripts/bench.sh run. Every line is one `run --json` report whose label
//! is `<column>/<load>`: column relay, embedded, scaled1 or scaled3; load
//! a–e (see scripts/bench.sh). A label may repeat (`./dev bench --repeat
//! N`): the table then shows each figure's median over the repeats, since
//! single runs of the same load on this machine vary by ±15 % (BENCHMARKS.md),
//! and lists every repeat below it.

use std::{collections::BTreeMap, fmt::Write as _, process::ExitCode};

use serde_json::Value;

/// The original (Node) figures from the issue: (a), (b), (c) delivered
/// msg/s and (d) p50 ms of the idle pair. None for (e).
const ORIGINAL: [Option<f64>; 5] = [Some(1620.0), Some(3540.0), Some(2650.0), Some(54.0), None];

const COLUMNS: [(&str, &str); 4] = [
    ("relay", "relay"),
    ("embedded", "Charcha embedded"),
    ("scaled1", "scaled 1 inst."),
    ("scaled3", "scaled 3 inst."),
];

/// Load, row title, figure (JSON pointer), unit, true when higher is better.
const ROWS: [(&str, &str, &str, &str); 5] = [
    ("a", "(a) 200 users, W=1", "/delivered_per_s", "msg/s"),
    ("b", "(b) 200 users, W=8", "/delivered_per_s", "msg/s"),
    ("c", "(c) 1000 users, W=1", "/delivered_per_s", "msg/s"),
    ("d", "(d) idle pair, p50 send→recv", "/delivery_latency/p50_ms", "ms"),
    ("e", "(e) rate R, p99 send→recv", "/delivery_latency/p99_ms", "ms"),
];

const USAGE: &str =
    "usage: charcha-bench table FILE.jsonl | charcha-bench table --figure COLUMN/LOAD POINTER FILE.jsonl";

/// The table; or, with `--figure`, one figure of it (the median over a
/// load's repeats, as the table shows it): scripts/bench.sh takes (e)'s
/// rate from (b)'s this way.
pub fn main(args: Vec<String>) -> ExitCode {
    let (figure_of, path) = match args.as_slice() {
        [path] => (None, path),
        [flag, label, pointer, path] if flag == "--figure" => (Some((label, pointer)), path),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("charcha-bench table: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runs = parse_runs(&text);
    let Some((label, pointer)) = figure_of else {
        print!("{}", render(&runs));
        return ExitCode::SUCCESS;
    };
    let Some((col, load)) = label.split_once('/') else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match figure(&runs, col, load, pointer) {
        Ok(Some(x)) => {
            println!("{x}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("charcha-bench table: no figure {pointer} of {label} in {path}");
            ExitCode::FAILURE
        }
    }
}

/// Every report of the file by (column, load), in the file's order.
type Runs = BTreeMap<(String, String), Vec<Value>>;

fn parse_runs(text: &str) -> Runs {
    let mut runs = Runs::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            eprintln!(
                "charcha-bench table: skipping a line that is not JSON: {}",
                line.chars().take(80).collect::<String>()
            );
            continue;
        };
        let label = v.get("label").and_then(Value::as_str).unwrap_or_default().to_string();
        if let Some((col, load)) = label.split_once('/') {
            runs.entry((col.to_string(), load.to_string())).or_default().push(v);
        }
    }
    runs
}

/// The median of a load's figure over its repeats (the mean of the two
/// middle ones for an even count); `Err` when any repeat failed.
fn figure(runs: &Runs, col: &str, load: &str, pointer: &str) -> Result<Option<f64>, ()> {
    let Some(reports) = runs.get(&(col.to_string(), load.to_string())) else { return Ok(None) };
    if reports.iter().any(|v| v.get("error").is_some()) {
        return Err(());
    }
    let mut values: Vec<f64> = reports.iter().filter_map(|v| v.pointer(pointer).and_then(Value::as_f64)).collect();
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Ok(match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    })
}

fn fmt_value(v: Result<Option<f64>, ()>, unit: &str) -> String {
    match v {
        Err(()) => "FAILED".into(),
        Ok(None) => "–".into(),
        Ok(Some(x)) if unit == "msg/s" => format!("{x:.0}"),
        Ok(Some(x)) => format!("{x:.2}"),
    }
}

fn render(runs: &Runs) -> String {
    let mut t = String::new();
    let rate = runs
        .iter()
        .find(|((_, load), _)| load == "e")
        .and_then(|(_, v)| v.first())
        .and_then(|v| v.get("rate").and_then(Value::as_f64));
    let repeats = runs.values().map(Vec::len).max().unwrap_or(0);
    if repeats > 1 {
        let _ = writeln!(t, "Medians of up to {repeats} runs of each load (every run is listed below).\n");
    }
    let title = |row: &str| match rate {
        Some(r) if row.starts_with("(e)") => row.replace("rate R", &format!("{r:.0} msg/s")),
        _ => row.to_string(),
    };
    let w0 = 38;
    let _ = write!(t, "{:<w0$}{:>12}{:>12}", "load", COLUMNS[0].1, "original");
    for (_, name) in &COLUMNS[1..] {
        let _ = write!(t, "{name:>18}");
    }
    t.push('\n');
    for (i, (load, row, pointer, unit)) in ROWS.iter().enumerate() {
        let _ = write!(t, "{:<w0$}", format!("{} {unit}", title(row)));
        let _ = write!(t, "{:>12}", fmt_value(figure(runs, "relay", load, pointer), unit));
        let _ = write!(t, "{:>12}", fmt_value(Ok(ORIGINAL[i]), unit));
        for (col, _) in &COLUMNS[1..] {
            let _ = write!(t, "{:>18}", fmt_value(figure(runs, col, load, pointer), unit));
        }
        t.push('\n');
    }
    for (versus, name) in [("relay", "Charcha / relay"), ("original", "Charcha / original")] {
        let _ = writeln!(t, "\n{name} (msg/s rows: higher is better; ms rows: lower is better)");
        for (i, (load, row, pointer, _)) in ROWS.iter().enumerate() {
            let base =
                if versus == "relay" { figure(runs, "relay", load, pointer).ok().flatten() } else { ORIGINAL[i] };
            let _ = write!(t, "{:<w0$}{:>12}{:>12}", title(row), "", "");
            for (col, _) in &COLUMNS[1..] {
                let cell = match (figure(runs, col, load, pointer), base) {
                    (Ok(Some(x)), Some(b)) if b > 0.0 && x / b < 0.1 => format!("{:.4}×", x / b),
                    (Ok(Some(x)), Some(b)) if b > 0.0 => format!("{:.2}×", x / b),
                    (Err(()), _) => "FAILED".into(),
                    _ => "–".into(),
                };
                let _ = write!(t, "{cell:>18}");
            }
            t.push('\n');
        }
    }
    let _ =
        writeln!(t, "\nAll runs (latencies in ms; CPU % of one core over the measured window, server and generator;");
    let _ = writeln!(t, "unstored: sent but not yet in history when the load ended, all stored that many s later)");
    let _ = writeln!(
        t,
        "{:<14}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>8}{:>8}{:>8}{:>7}{:>6}{:>6}{:>7}{:>10}{:>9}  result",
        "run",
        "msg/s",
        "ack p50",
        "ack p99",
        "recv p50",
        "recv p99",
        "p99.9",
        "CPU %",
        "RSS MB",
        "gen CPU",
        "lost",
        "dup",
        "reord",
        "errors",
        "unstored",
        "stored s"
    );
    // Column order (relay first), then load; unknown columns last.
    let rank = |col: &str| COLUMNS.iter().position(|(c, _)| *c == col).unwrap_or(COLUMNS.len());
    let mut ordered: Vec<_> = runs.iter().collect();
    ordered.sort_by_key(|((col, load), _)| (rank(col), col.clone(), load.clone()));
    let each = ordered.into_iter().flat_map(|((col, load), reports)| {
        let many = reports.len() > 1;
        reports
            .iter()
            .enumerate()
            .map(move |(i, v)| (if many { format!("{col}/{load}#{}", i + 1) } else { format!("{col}/{load}") }, v))
    });
    for (label, v) in each {
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            let _ = writeln!(t, "{label:<14}FAILED: {e}");
            continue;
        }
        let f = |p: &str| v.pointer(p).and_then(Value::as_f64);
        let num = |p: &str, d: usize| f(p).map(|x| format!("{x:.d$}")).unwrap_or_else(|| "–".into());
        let ok = v.get("ok").and_then(Value::as_bool).unwrap_or(false);
        let _ = writeln!(
            t,
            "{label:<14}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>8}{:>8}{:>8}{:>7}{:>6}{:>6}{:>7}{:>10}{:>9}  {}",
            num("/delivered_per_s", 0),
            num("/ack_latency/p50_ms", 2),
            num("/ack_latency/p99_ms", 2),
            num("/delivery_latency/p50_ms", 2),
            num("/delivery_latency/p99_ms", 2),
            num("/delivery_latency/p999_ms", 2),
            num("/server/cpu_percent", 0),
            num("/server/rss_mb", 0),
            num("/generator_cpu_percent", 0),
            num("/lost", 0),
            num("/duplicated", 0),
            num("/reordered", 0),
            num("/errors", 0),
            num("/history/behind_at_end", 0),
            num("/history/caught_up_s", 2),
            if ok { "ok" } else { "NOT OK" }
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(label: &str, msg_s: f64) -> String {
        serde_json::json!({"label": label, "delivered_per_s": msg_s, "ok": true}).to_string()
    }

    #[test]
    fn repeats_show_their_median_and_each_run() {
        let lines = [
            report("relay/a", 60000.0),
            report("embedded/a", 20000.0),
            report("embedded/a", 26000.0),
            report("embedded/a", 23000.0),
            report("embedded/c", 10.0),
            report("embedded/c", 30.0),
        ]
        .join("\n");
        let runs = parse_runs(&lines);
        assert_eq!(figure(&runs, "embedded", "a", "/delivered_per_s"), Ok(Some(23000.0)));
        assert_eq!(figure(&runs, "embedded", "c", "/delivered_per_s"), Ok(Some(20.0)));
        assert_eq!(figure(&runs, "relay", "a", "/delivered_per_s"), Ok(Some(60000.0)));
        assert_eq!(figure(&runs, "embedded", "b", "/delivered_per_s"), Ok(None));
        let table = render(&runs);
        assert!(table.starts_with("Medians of up to 3 runs"), "{table}");
        assert!(table.contains("0.38×"), "23,000 / 60,000 in the relay ratios: {table}");
        for label in ["embedded/a#1", "embedded/a#2", "embedded/a#3", "embedded/c#2"] {
            assert!(table.contains(label), "{label} listed: {table}");
        }
        assert!(table.contains("relay/a  "), "a single run keeps its plain label: {table}");
    }

    #[test]
    fn a_failed_repeat_fails_the_figure() {
        let lines = [
            report("embedded/b", 70000.0),
            r#"{"label":"embedded/b","error":"charcha-bench exited with 1 and no report","ok":false}"#.to_string(),
        ]
        .join("\n");
        let runs = parse_runs(&lines);
        assert_eq!(figure(&runs, "embedded", "b", "/delivered_per_s"), Err(()));
        let table = render(&runs);
        assert!(table.contains("FAILED: charcha-bench exited with 1"), "{table}");
    }
}
