//! The plan for people: sections of aligned columns, sizes in MB/GB, durations in minutes and seconds.
//! (`--json` is the plan itself; this is only its reading.)

use super::{Plan, Side};

/// Columns padded to their widest cell, two spaces apart; the last column is not padded.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::from("  ");
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A size for people: `unknown`, bytes, kB, MB or GB (powers of 1000, as throughputs are given).
pub(crate) fn size(bytes: Option<u64>) -> String {
    match bytes {
        None => "unknown".to_owned(),
        Some(b) if b < 1000 => format!("{b} B"),
        Some(b) => {
            let (unit, scale) = [("GB", 1e9), ("MB", 1e6), ("kB", 1e3)]
                .into_iter()
                .find(|(_, s)| b as f64 >= *s)
                .expect("b >= 1000");
            format!("{:.1} {unit}", b as f64 / scale)
        }
    }
}

/// A duration for people: `unknown`, `45 s`, `12 min 5 s`, `2 h 3 min`.
pub(crate) fn duration(seconds: Option<u64>) -> String {
    match seconds {
        None => "unknown".to_owned(),
        Some(s) if s < 60 => format!("{s} s"),
        Some(s) if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        Some(s) => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

fn side(label: &str, s: &Side) -> Vec<String> {
    vec![
        label.to_owned(),
        s.provider.clone(),
        s.runtime.clone(),
        s.s3_endpoint
            .clone()
            .unwrap_or_else(|| "no object storage".into()),
        s.file.clone(),
    ]
}

/// The whole plan as text: providers, conflicts, what moves, by hand, steps, downtime, DNS, rollback.
pub fn render_table(plan: &Plan) -> String {
    let mut out = format!(
        "Migration plan: operator {} ({}), from {} to {}\n\n",
        plan.operator, plan.domain, plan.from.provider, plan.to.provider
    );
    out.push_str(&table(&[
        vec![
            String::new(),
            "provider".into(),
            "runtime".into(),
            "object storage".into(),
            "specification".into(),
        ],
        side("from", &plan.from),
        side("to", &plan.to),
    ]));
    if plan.conflicts.is_empty() {
        out.push_str("\nConflicts: none; B can run the operator as it is.\n");
    } else {
        out.push_str(&format!(
            "\nConflicts ({}): B cannot run the operator until each is resolved.\n",
            plan.conflicts.len()
        ));
        let mut rows = vec![vec!["where".into(), "field".into(), "problem".into()]];
        rows.extend(
            plan.conflicts
                .iter()
                .map(|c| vec![c.at.clone(), c.field.clone(), c.message.clone()]),
        );
        out.push_str(&table(&rows));
    }
    out.push_str("\nWhat moves:\n");
    let mut rows = vec![vec![
        "application".into(),
        "kind".into(),
        "name".into(),
        "size".into(),
        "from".into(),
        "to".into(),
    ]];
    rows.extend(plan.moves.iter().map(|m| {
        vec![
            m.application.clone(),
            m.kind.name().to_owned() + if m.automatic { "" } else { " (by hand)" },
            m.name.clone(),
            size(m.bytes),
            m.source.clone(),
            m.target.clone(),
        ]
    }));
    out.push_str(&table(&rows));
    if !plan.manual.is_empty() {
        out.push_str("\nBy hand:\n");
        for m in &plan.manual {
            out.push_str(&format!("  - {m}\n"));
        }
    }
    out.push_str(
        "\nSteps (`fedigen migrate run` on each machine at B; each recorded in its journal):\n",
    );
    for machine in &plan.steps {
        out.push_str(&format!(
            "  {}: {}\n",
            machine.machine,
            machine.steps.join(", ")
        ));
    }
    let d = &plan.downtime;
    out.push_str(&format!(
        "\nDowntime: freeze window {} (bulk copy before it, while A serves: {})\n",
        duration(d.freeze_seconds),
        duration(d.bulk_seconds)
    ));
    let mut rows = vec![vec![
        "part of the freeze".into(),
        "bytes".into(),
        "time".into(),
    ]];
    rows.extend(d.parts.iter().map(|p| {
        let bytes = match (p.bytes, p.seconds) {
            (None, Some(_)) => "-".to_owned(),
            (b, _) => size(b),
        };
        vec![p.what.clone(), bytes, duration(p.seconds)]
    }));
    out.push_str(&table(&rows));
    out.push_str(&format!("  estimated from {}\n", d.method));
    let dns = &plan.dns;
    out.push_str(&format!(
        "\nDNS (zone {}): lower the TTL of the records below from {} s to {} s at least {} before the switch; the switch is the last step; once B serves, raise the TTL back to {} s\n",
        dns.zone,
        dns.ttl,
        dns.lowered_ttl,
        duration(Some(u64::from(dns.lower_before_seconds))),
        dns.ttl
    ));
    if dns.name_servers.from != dns.name_servers.to {
        out.push_str(&format!(
            "  name servers change (a delegation change at the registry): {} -> {}\n",
            join(&dns.name_servers.from),
            join(&dns.name_servers.to)
        ));
        // The parent zone's NS records (and DS, if signed) have the registry's TTL, often one to two days,
        // which lowering this zone's TTL does not shorten: resolvers keep asking A's servers that long.
        out.push_str(
            "  the delegation is not bounded by the lowered TTL: the parent zone's NS records keep the registry's TTL (often 1-2 days), and resolvers ask A's servers until it passes. Change the delegation at least two days before the switch, with B's servers answering A's addresses (the \"at A\" column) meanwhile; at the switch, change the records at both providers' servers at once\n",
        );
    }
    let lost_v6: Vec<&str> = dns
        .changes
        .iter()
        .filter(|c| c.kind == "AAAA" && !c.from.is_empty() && c.to.is_empty())
        .map(|c| c.name.as_str())
        .collect();
    if !lost_v6.is_empty() {
        out.push_str(&format!(
            "  B gives {} no IPv6 address: after the switch they are not reachable over IPv6 (clients and servers with IPv6 only lose them)\n",
            lost_v6.join(", ")
        ));
    }
    if let Some(note) = &dns.note {
        out.push_str(&format!("  note: {note}\n"));
    }
    if dns.changes.is_empty() {
        out.push_str("  no address record changes\n");
    } else {
        let mut rows = vec![vec![
            "name".into(),
            "type".into(),
            "at A".into(),
            "at B".into(),
        ]];
        rows.extend(
            dns.changes
                .iter()
                .map(|c| vec![c.name.clone(), c.kind.clone(), join(&c.from), join(&c.to)]),
        );
        out.push_str(&table(&rows));
    }
    out.push_str("\nRollback:\n");
    for r in &plan.rollback {
        out.push_str(&format!("  - {r}\n"));
    }
    out
}

fn join(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(" ")
    }
}
