//! Fires enabled schedules on their UTC cron.
//!
//! Every tick, for every enabled schedule, the latest due occurrence after the schedule's
//! cursor (when it was first seen enabled, or its last fire) is claimed as a unique row in
//! `schedule_fires`; only the replica whose insert succeeds starts the run. Occurrences
//! missed while no server ran collapse into one catch-up run, and none runs twice.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use croner::Cron;
use sha2::{Digest, Sha256};

use super::{EnabledSchedule, Inner};
use crate::store::runs;

/// Largest constant offset of `--schedule-spread`, as in the original service.
pub const MAX_SPREAD_MS: i64 = 7 * 60 * 1000;

/// A schedule's `interval`.
#[derive(Debug)]
pub enum Interval {
    /// `@once`: one run after the schedule is enabled.
    Once,
    Cron(Box<Cron>),
}

/// Parses a schedule interval: a 5-field cron expression (UTC) or one of `@hourly`,
/// `@daily`, `@weekly`, `@monthly`, `@yearly`, `@annually`, `@midnight`, `@once`.
pub fn parse_interval(text: &str) -> Result<Interval, String> {
    let text = text.trim();
    let expr = match text.to_ascii_lowercase().as_str() {
        "@once" => return Ok(Interval::Once),
        "@hourly" => "0 * * * *",
        "@daily" | "@midnight" => "0 0 * * *",
        "@weekly" => "0 0 * * 0",
        "@monthly" => "0 0 1 * *",
        "@yearly" | "@annually" => "0 0 1 1 *",
        _ => text,
    };
    if expr.split_whitespace().count() != 5 {
        return Err(format!(
            "`{text}` is not a cron expression with 5 fields (minute hour day month weekday) \
             nor one of @hourly, @daily, @weekly, @monthly, @yearly, @once"
        ));
    }
    Cron::new(expr)
        .parse()
        .map(|c| Interval::Cron(Box::new(c)))
        .map_err(|e| format!("`{text}` is not a valid cron expression: {e}"))
}

/// The constant offset of a schedule under `--schedule-spread`: pseudo-random but the same
/// on every replica and across restarts.
pub fn spread_offset_ms(project_id: &str, deployment: &str, schedule: &str) -> i64 {
    let digest = Sha256::digest(format!("{project_id}/{deployment}/{schedule}").as_bytes());
    let mut n = [0u8; 8];
    n.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(n) % MAX_SPREAD_MS as u64) as i64
}

/// The latest occurrence `t` of `cron` with `after < t <= now`.
pub fn latest_due(cron: &Cron, after: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if now <= after {
        return None;
    }
    // Search the recent past first so that a frequent cron after a long pause costs a
    // bounded number of steps; fall back to the whole range for rare ones.
    let recent = now - ChronoDuration::days(2);
    if recent > after {
        if let Some(t) = scan(cron, recent, now) {
            return Some(t);
        }
    }
    scan(cron, after, now)
}

fn scan(cron: &Cron, after: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut last = None;
    let mut from = after;
    for _ in 0..200_000 {
        match cron.find_next_occurrence(&from, false) {
            Ok(t) if t <= now => {
                last = Some(t);
                from = t;
            }
            _ => break,
        }
    }
    last
}

/// Which occurrence (nominal time, ms) of a schedule is due now, if any.
pub fn due_fire(
    interval: &Interval,
    cursor: runs::Cursor,
    offset_ms: i64,
    now_ms: i64,
) -> Option<i64> {
    match interval {
        // A fire before the schedule was last enabled belongs to an earlier enabling.
        Interval::Once => cursor
            .last_fire_ms
            .is_none_or(|f| f < cursor.enabled_ms)
            .then_some(cursor.enabled_ms),
        Interval::Cron(cron) => {
            // Occurrences are due `offset_ms` after their nominal time; ones whose due
            // time came before the schedule was enabled never fire.
            let after_ms = cursor
                .last_fire_ms
                .unwrap_or(i64::MIN)
                .max(cursor.enabled_ms - offset_ms);
            let after = DateTime::<Utc>::from_timestamp_millis(after_ms)?;
            let now = DateTime::<Utc>::from_timestamp_millis(now_ms - offset_ms)?;
            latest_due(cron, after, now).map(|t| t.timestamp_millis())
        }
    }
}

/// One evaluation of every enabled schedule.
pub(crate) async fn tick(inner: &Arc<Inner>) {
    let schedules = match inner.host.enabled_schedules().await {
        Ok(s) => s,
        Err(err) => {
            tracing::warn!(error = %err, "listing enabled schedules failed");
            return;
        }
    };
    let keys: HashSet<(String, String, String)> = schedules
        .iter()
        .map(|s| {
            (
                s.target.project_id.clone(),
                s.target.deployment_name.clone(),
                s.schedule_name.clone(),
            )
        })
        .collect();
    if let Err(err) = runs::forget_cursors_except(&inner.pool, &keys).await {
        tracing::warn!(error = %err, "clearing schedule cursors failed");
    }
    // One query for the last fire of every schedule, rather than one per schedule.
    let last_fires = match runs::last_fires(&inner.pool).await {
        Ok(f) => f,
        Err(err) => {
            tracing::warn!(error = %err, "reading schedule fires failed");
            return;
        }
    };
    let now_ms = inner.cfg.clock.now_ms();
    for schedule in schedules {
        let key = (
            schedule.target.project_id.clone(),
            schedule.target.deployment_name.clone(),
            schedule.schedule_name.clone(),
        );
        let last_fire = last_fires.get(&key).copied();
        if let Err(err) = consider(inner, &schedule, last_fire, now_ms).await {
            tracing::warn!(
                project_id = schedule.target.project_id,
                deployment = schedule.target.deployment_name,
                schedule = schedule.schedule_name,
                error = %err,
                "evaluating a schedule failed"
            );
        }
    }
}

async fn consider(
    inner: &Arc<Inner>,
    s: &EnabledSchedule,
    last_fire: Option<i64>,
    now_ms: i64,
) -> Result<(), String> {
    let interval = parse_interval(&s.interval)?;
    let t = &s.target;
    let cursor = match s.enabled_ms {
        Some(enabled_ms) => runs::Cursor {
            enabled_ms,
            last_fire_ms: last_fire,
        },
        None => runs::schedule_cursor(
            &inner.pool,
            &t.project_id,
            &t.deployment_name,
            &s.schedule_name,
            now_ms,
        )
        .await
        .map_err(|e| e.to_string())?,
    };
    let offset = if inner.cfg.schedule_spread {
        spread_offset_ms(&t.project_id, &t.deployment_name, &s.schedule_name)
    } else {
        0
    };
    let Some(fire_ms) = due_fire(&interval, cursor, offset, now_ms) else {
        return Ok(());
    };
    let execution_id = super::new_execution_id();
    let claimed = runs::claim_fire(
        &inner.pool,
        &t.project_id,
        &t.deployment_name,
        &s.schedule_name,
        fire_ms,
        &execution_id,
        &inner.runner_id,
        now_ms,
    )
    .await
    .map_err(|e| e.to_string())?;
    if !claimed {
        return Ok(());
    }
    tracing::info!(
        execution_id,
        deployment = t.deployment_name,
        schedule = s.schedule_name,
        occurrence = runs::iso_ms(fire_ms),
        "schedule due"
    );
    super::start_scheduled(inner, s, execution_id)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cron(s: &str) -> Box<Cron> {
        match parse_interval(s).unwrap() {
            Interval::Cron(c) => c,
            Interval::Once => panic!("once"),
        }
    }

    #[test]
    fn nicknames_and_errors() {
        assert!(matches!(parse_interval("@once"), Ok(Interval::Once)));
        for n in [
            "@hourly",
            "@daily",
            "@weekly",
            "@monthly",
            "@yearly",
            "*/5 * * * *",
        ] {
            assert!(matches!(parse_interval(n), Ok(Interval::Cron(_))), "{n}");
        }
        assert!(parse_interval("@sometimes").is_err());
        assert!(parse_interval("61 * * * *").is_err());
        assert!(parse_interval("* * *").is_err());
    }

    #[test]
    fn latest_due_picks_the_last_occurrence_only() {
        let c = cron("@hourly");
        let t = latest_due(&c, at("2026-01-01T00:30:00Z"), at("2026-01-01T05:10:00Z"));
        assert_eq!(t, Some(at("2026-01-01T05:00:00Z")));
        assert_eq!(
            latest_due(&c, at("2026-01-01T05:00:00Z"), at("2026-01-01T05:59:59Z")),
            None
        );
        // A frequent cron after a long pause.
        let c = cron("* * * * *");
        let t = latest_due(&c, at("2025-01-01T00:00:00Z"), at("2026-01-01T05:10:30Z"));
        assert_eq!(t, Some(at("2026-01-01T05:10:00Z")));
        // A rare one beyond the recent window.
        let c = cron("@yearly");
        let t = latest_due(&c, at("2025-06-01T00:00:00Z"), at("2026-03-01T00:00:00Z"));
        assert_eq!(t, Some(at("2026-01-01T00:00:00Z")));
    }

    #[test]
    fn due_fire_respects_enabling_and_offset() {
        let i = Interval::Cron(cron("@hourly"));
        let enabled = at("2026-01-01T00:30:00Z").timestamp_millis();
        let cur = runs::Cursor {
            enabled_ms: enabled,
            last_fire_ms: None,
        };
        // Not due before the first occurrence after enabling.
        assert_eq!(due_fire(&i, cur, 0, enabled + 1000), None);
        let one = at("2026-01-01T01:00:00Z").timestamp_millis();
        assert_eq!(due_fire(&i, cur, 0, one), Some(one));
        // With an offset of 3 minutes it is due 3 minutes later.
        assert_eq!(due_fire(&i, cur, 180_000, one + 60_000), None);
        assert_eq!(due_fire(&i, cur, 180_000, one + 180_000), Some(one));
        // Once fired, not again.
        let fired = runs::Cursor {
            enabled_ms: enabled,
            last_fire_ms: Some(one),
        };
        assert_eq!(due_fire(&i, fired, 0, one + 1_000_000), None);
        // @once fires at enabling, once.
        assert_eq!(due_fire(&Interval::Once, cur, 0, enabled), Some(enabled));
        let once_fired = runs::Cursor {
            enabled_ms: enabled,
            last_fire_ms: Some(enabled),
        };
        assert_eq!(due_fire(&Interval::Once, once_fired, 0, enabled + 5), None);
        // Enabled again later: once more.
        let again = runs::Cursor {
            enabled_ms: enabled + 10_000,
            last_fire_ms: Some(enabled),
        };
        assert_eq!(
            due_fire(&Interval::Once, again, 0, enabled + 20_000),
            Some(enabled + 10_000)
        );
        // A fire of an earlier enabling does not hold back the cron schedule's next one.
        let later = runs::Cursor {
            enabled_ms: one + 600_000,
            last_fire_ms: Some(one - 3_600_000),
        };
        assert_eq!(
            due_fire(&i, later, 0, one + 3_600_000),
            Some(one + 3_600_000)
        );
        assert_eq!(due_fire(&i, later, 0, one + 1_000_000), None);
    }

    #[test]
    fn spread_is_stable_and_bounded() {
        let a = spread_offset_ms("p", "prod", "daily");
        assert_eq!(a, spread_offset_ms("p", "prod", "daily"));
        assert!((0..MAX_SPREAD_MS).contains(&a));
        assert_ne!(a, spread_offset_ms("p", "staging", "daily"));
    }
}
