//! The summary table and the definitions of its columns, written from one list so no column
//! goes unexplained. The definitions say exactly what `sim::metrics::summarise` computes.

use super::cdf::percent;
use super::esc;
use crate::sim::metrics::quantile;
use crate::sim::run::{Policy, PolicyRun};
use std::fmt::Write as _;

/// One policy's row: its summary and, recomputed from its samples, its reaction times (the
/// summary writes 0 where there was nothing to react to; the table writes –).
pub struct Row<'a> {
    pub run: &'a PolicyRun,
    /// Seconds to the first scale-up call of each episode that had one, sorted.
    pub api_s: Vec<f64>,
    /// Seconds until serving met demand, per episode that got there, sorted.
    pub ready_s: Vec<f64>,
}

/// A column: its header, its definition, and how a row's cell is written.
pub(super) struct Column {
    pub(super) header: &'static str,
    pub(super) definition: &'static str,
    cell: fn(&Row) -> String,
}

/// The median of sorted values, or – when there are none (unknown, not zero).
fn median_or_dash(sorted: &[f64]) -> String {
    if sorted.is_empty() {
        "–".to_owned()
    } else {
        f(quantile(sorted, 0.5), 1)
    }
}

fn f(v: f64, decimals: usize) -> String {
    format!("{v:.decimals$}")
}

pub(super) const COLUMNS: &[Column] = &[
    Column {
        header: "SLO",
        definition: "SLO attainment: the share of the replay's requests whose queue wait was at \
                     most the SLO's queue wait. The oracle meets every bucket's demand by \
                     construction and is listed at 1.",
        cell: |r| f(r.run.summary.slo_attainment, 4),
    },
    Column {
        header: "p50 s",
        definition: "Median queue wait, seconds: time from a request's arrival until a replica \
                     started serving it, summed over its attempts when a preemption or scale-in \
                     sent it back to the queue; requests still queued at the end count their \
                     wait so far. Nearest-rank quantile over all requests.",
        cell: |r| f(r.run.summary.queue_wait_p50_s, 2),
    },
    Column {
        header: "p99 s",
        definition: "99th-percentile queue wait, seconds (nearest rank).",
        cell: |r| f(r.run.summary.queue_wait_p99_s, 2),
    },
    Column {
        header: "p99.9 s",
        definition: "99.9th-percentile queue wait, seconds (nearest rank).",
        cell: |r| f(r.run.summary.queue_wait_p999_s, 2),
    },
    Column {
        header: "cost $",
        definition: "What the replay cost, US$: every instance billed per millisecond at its \
                     group's hourly price while launching, warming, starting, ready or \
                     draining, plus the disks of stopped warm-pool instances.",
        cell: |r| f(r.run.summary.cost_usd, 2),
    },
    Column {
        header: "spot $",
        definition: "The part of cost spent on spot instances, net of what the cloud did not \
                     bill (AWS: nothing for a spot instance it reclaims within its first hour).",
        cell: |r| f(r.run.summary.spot_cost_usd, 2),
    },
    Column {
        header: "on-demand $",
        definition: "The rest: on-demand instances and warm-pool disks.",
        cell: |r| f(r.run.summary.on_demand_cost_usd, 2),
    },
    Column {
        header: "× oracle",
        definition: "Cost divided by the oracle's: the least any policy could pay to meet every \
                     bucket's demand knowing the future, with the same median cold start (a \
                     lower bound, except that it pays for spot usage the cloud refunds; 1.000 \
                     is the oracle itself); n/a when the oracle failed.",
        cell: |r| {
            r.run
                .summary
                .cost_vs_oracle
                .map_or_else(|| "n/a".to_owned(), |x| f(x, 3))
        },
    },
    Column {
        header: "GPU-h",
        definition: "GPU-hours paid for: GPUs per instance × hours each instance was billed \
                     as running (launching to draining; warm-pool disks not included).",
        cell: |r| f(r.run.summary.gpu_hours, 1),
    },
    Column {
        header: "idle-h",
        definition: "Of those, GPU-hours during which the instance served no request \
                     (GPU-h minus the GPU-hours with at least one request in flight), \
                     including cold starts.",
        cell: |r| f(r.run.summary.idle_gpu_hours, 1),
    },
    Column {
        header: "actions",
        definition: "Cloud calls that succeeded and changed capacity: launches, terminations, \
                     warm-pool resizes and releases of launches the cloud did not fulfil.",
        cell: |r| r.run.summary.scale_actions.to_string(),
    },
    Column {
        header: "hurt",
        definition: "Requests in flight on a spot instance when the cloud reclaimed it, each \
                     counted once; they went back to the front of the queue.",
        cell: |r| r.run.summary.requests_hurt_by_preemption.to_string(),
    },
    Column {
        header: "cut",
        definition: "Requests cut short by the policy itself: in flight on an instance it \
                     terminated (a scale-in that did not wait for them), counted per cut.",
        cell: |r| r.run.summary.requests_cut_short.to_string(),
    },
    Column {
        header: "api s",
        definition: "Reaction to API: median seconds from a demand rise above the replicas \
                     serving (per demand bucket) to the first successful scale-up call; a call \
                     up to one bucket before the rise counts as 0 (anticipated). – when no rise \
                     was followed by a scale-up call (the summary and --json write 0).",
        cell: |r| median_or_dash(&r.api_s),
    },
    Column {
        header: "ready s",
        definition: "Reaction to ready: median seconds from that rise until the replicas \
                     serving reached the demand; – when none did (the summary and --json \
                     write 0).",
        cell: |r| median_or_dash(&r.ready_s),
    },
    Column {
        header: "failed launches",
        definition: "Launches the cloud accepted and then reported it could not fulfil, or \
                     (never reported) that the controller took back after its launch timeout.",
        cell: |r| r.run.summary.failed_launches.to_string(),
    },
    Column {
        header: "fallback s",
        definition: "Seconds from a failed launch being known to the first successful launch of \
                     the same pool on another offering, before the failed offering was tried \
                     again: median / max over the failures that had one; – when none had \
                     (unknown, not zero).",
        cell: |r| match (
            r.run.summary.failure_to_fallback_s_p50,
            r.run.summary.failure_to_fallback_s_max,
        ) {
            (Some(p50), Some(max)) => format!("{p50:.0} / {max:.0}"),
            _ => "–".to_owned(),
        },
    },
];

/// The cheapest run or tuned baseline setting that met `target`, other than the oracle's:
/// `(policy, setting if tuned, cost $, attainment)`.
pub fn cheapest_meeting(runs: &[PolicyRun], target: f64) -> Option<(&str, Option<&str>, f64, f64)> {
    let own = runs
        .iter()
        .filter(|r| r.summary.policy != Policy::Oracle.name())
        .map(|r| {
            (
                r.summary.policy.as_str(),
                None,
                r.summary.cost_usd,
                r.summary.slo_attainment,
            )
        });
    let tuned = runs.iter().filter_map(|r| {
        let t = r.tuned.as_ref()?;
        Some((
            r.summary.policy.as_str(),
            Some(t.setting.as_str()),
            t.cost_usd,
            t.slo_attainment,
        ))
    });
    own.chain(tuned)
        .filter(|x| x.3 >= target)
        .min_by(|a, b| a.2.total_cmp(&b.2))
}

const TUNED: &str = "tuned";
const TUNED_DEFINITION: &str = "With --tune-baselines: the cheapest setting of the baseline's \
     own knob (static-peak: fleet size; the HPA-driven ones: minReplicas × target per replica) \
     whose run met the scenario's SLO target, with that run's attainment and cost; \"none of N\" \
     when no setting tried met it.";

/// The table and, below it, the definitions of its columns.
pub fn render(out: &mut String, rows: &[Row], target: f64) {
    let tuned = rows.iter().any(|r| !r.run.sweep.is_empty());
    out.push_str("<div class=table><table><tr><th>policy</th>");
    for c in COLUMNS {
        let _ = write!(out, "<th>{}</th>", esc(c.header));
    }
    if tuned {
        let _ = write!(out, "<th>{TUNED}</th>");
    }
    out.push_str("</tr>\n");
    for r in rows {
        let _ = write!(out, "<tr><td class=l>{}</td>", esc(&r.run.summary.policy));
        for c in COLUMNS {
            // An attainment under the target is marked.
            let miss = c.header == "SLO" && r.run.summary.slo_attainment < target;
            let class = if miss { " class=miss" } else { "" };
            let _ = write!(out, "<td{class}>{}</td>", esc(&(c.cell)(r)));
        }
        if tuned {
            let cell = match (&r.run.tuned, r.run.sweep.len()) {
                (_, 0) => "–".to_owned(),
                (Some(t), _) => format!(
                    "{} ({:.4}, ${:.2})",
                    t.setting, t.slo_attainment, t.cost_usd
                ),
                (None, n) => format!("none of {n} met {}", percent(target)),
            };
            let _ = write!(out, "<td class=l>{}</td>", esc(&cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table></div>\n<dl class=defs>");
    for c in COLUMNS {
        let _ = write!(
            out,
            "<dt>{}</dt><dd>{}</dd>",
            esc(c.header),
            esc(c.definition)
        );
    }
    if tuned {
        let _ = write!(out, "<dt>{TUNED}</dt><dd>{}</dd>", esc(TUNED_DEFINITION));
    }
    out.push_str("</dl>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_reaction_is_a_dash_not_zero() {
        assert_eq!(median_or_dash(&[]), "–");
        assert_eq!(median_or_dash(&[0.0]), "0.0");
        assert_eq!(median_or_dash(&[1.0, 5.0, 9.0]), "5.0");
    }

    #[test]
    fn every_column_has_a_definition() {
        let mut out = String::new();
        render(&mut out, &[], 0.99);
        let defs = &out[out.find("<dl").unwrap()..];
        for c in COLUMNS {
            assert!(c.definition.len() > 20, "{}", c.header);
            assert!(defs.contains(&format!("<dt>{}</dt>", esc(c.header))));
        }
    }
}
