//! Cron pods: `schedule` (five-field cron) and its companions `timezone`,
//! `concurrency`, `history`, `starting_deadline` and `timeout`; their rules,
//! and the schedule's arithmetic (the latest tick, the next one), pure so the
//! scheduler in `dubernetes-core` and the tests share it.
//!
//! The expression is read by [croner](https://docs.rs/croner) (POSIX/Vixie
//! cron: `*/5`, ranges, lists, `JAN`-`DEC`, `SUN`-`SAT`, `@hourly`...; a day
//! of month and a day of week both set match either, as in Vixie cron), with
//! seconds and years refused: five fields, minute granularity. Times are
//! computed in `timezone` by [jiff](https://docs.rs/jiff) with its bundled
//! IANA database: a wall-clock time that a DST change skips runs when the
//! clock jumps.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{FieldError, PodSpec};

/// `history` when unset: exited runs kept per cron pod.
pub const DEFAULT_CRON_HISTORY: u32 = 5;
/// Largest `history`.
pub const MAX_CRON_HISTORY: u32 = 50;
/// `starting_deadline` when unset: how late a tick may still start.
pub const DEFAULT_STARTING_DEADLINE: Duration = Duration::from_secs(300);
/// Longest `schedule` text, in bytes.
pub const MAX_SCHEDULE_BYTES: usize = 256;

/// What a tick does while an earlier run of the schedule still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Concurrency {
    /// Skip the tick (an event says so): one run at a time.
    #[default]
    Forbid,
    /// Start another run beside it.
    Allow,
    /// Stop the running one (its grace period, then SIGKILL), then start.
    Replace,
}

impl Concurrency {
    /// `forbid`, `allow` or `replace`.
    pub fn as_str(self) -> &'static str {
        match self {
            Concurrency::Forbid => "forbid",
            Concurrency::Allow => "allow",
            Concurrency::Replace => "replace",
        }
    }
}

/// A valid `schedule` with its time zone, ready to compute ticks.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: croner::Cron,
    zone: jiff::tz::TimeZone,
}

impl CronSchedule {
    /// Parses `expression` (five fields) in the IANA zone `timezone` (UTC when `None`).
    pub fn new(expression: &str, timezone: Option<&str>) -> Result<CronSchedule, FieldError> {
        let cron = parse_expression(expression).map_err(|m| FieldError::new("schedule", m))?;
        let zone = match timezone {
            None => jiff::tz::TimeZone::UTC,
            Some(name) => zone_of(name).map_err(|m| FieldError::new("timezone", m))?,
        };
        Ok(CronSchedule { cron, zone })
    }

    fn zoned(&self, unix: i64) -> Option<jiff::Zoned> {
        Some(jiff::Timestamp::from_second(unix).ok()?.to_zoned(self.zone.clone()))
    }

    /// The latest tick at or before `unix` (seconds), if any.
    pub fn latest_at_or_before(&self, unix: i64) -> Option<i64> {
        let at = self.zoned(unix)?;
        let tick = self.cron.find_previous_occurrence(&at, true).ok()?;
        Some(tick.timestamp().as_second())
    }

    /// The first tick after `unix` (seconds), if any.
    pub fn next_after(&self, unix: i64) -> Option<i64> {
        let at = self.zoned(unix)?;
        let tick = self.cron.find_next_occurrence(&at, false).ok()?;
        Some(tick.timestamp().as_second())
    }
}

fn parse_expression(expression: &str) -> Result<croner::Cron, String> {
    if expression.len() > MAX_SCHEDULE_BYTES {
        return Err(format!("is longer than {MAX_SCHEDULE_BYTES} bytes"));
    }
    let hint =
        "write five fields, minute hour day-of-month month day-of-week, e.g. \"*/5 * * * *\" or \"30 2 * * MON-FRI\"";
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|e| {
            format!(
                "{:?} is not a cron expression ({e}); {hint}",
                expression.escape_default().to_string()
            )
        })?;
    // A pattern that never matches (`0 0 30 2 *`) is a mistake, not a pod that never runs.
    let probe = jiff::Timestamp::UNIX_EPOCH.to_zoned(jiff::tz::TimeZone::UTC);
    if cron.find_next_occurrence(&probe, false).is_err() {
        return Err(format!(
            "{:?} never matches a date; {hint}",
            expression.escape_default().to_string()
        ));
    }
    Ok(cron)
}

fn zone_of(name: &str) -> Result<jiff::tz::TimeZone, String> {
    let bad = || {
        format!(
            "{:?} is not an IANA time zone name; write e.g. \"UTC\", \"Europe/Paris\" or \"America/New_York\"",
            name.escape_default().to_string()
        )
    };
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    jiff::tz::TimeZone::get(name).map_err(|_| bad())
}

impl PodSpec {
    /// Whether this is a cron pod (it has a `schedule`).
    pub fn is_cron(&self) -> bool {
        self.schedule.is_some()
    }

    /// The schedule, if this is a valid cron pod.
    pub fn cron_schedule(&self) -> Option<CronSchedule> {
        CronSchedule::new(self.schedule.as_deref()?, self.timezone.as_deref()).ok()
    }

    /// Replicas the controller keeps: none for a cron pod (it runs one-off
    /// containers on its schedule instead), else `replicas`.
    pub fn desired_replicas(&self) -> u32 {
        if self.is_cron() { 0 } else { self.replicas }
    }

    /// `concurrency` in force (default `forbid`).
    pub fn cron_concurrency(&self) -> Concurrency {
        self.concurrency.unwrap_or_default()
    }

    /// `history` in force (default [`DEFAULT_CRON_HISTORY`]).
    pub fn cron_history(&self) -> u32 {
        self.history.unwrap_or(DEFAULT_CRON_HISTORY)
    }

    /// `starting_deadline` in force (default [`DEFAULT_STARTING_DEADLINE`]).
    pub fn starting_deadline(&self) -> Duration {
        self.starting_deadline.unwrap_or(DEFAULT_STARTING_DEADLINE)
    }

    /// Checks `schedule` and its companions.
    pub(super) fn validate_cron(&self, problems: &mut Vec<FieldError>) {
        let Some(schedule) = &self.schedule else {
            let orphans = [
                ("timezone", self.timezone.is_some()),
                ("concurrency", self.concurrency.is_some()),
                ("history", self.history.is_some()),
                ("starting_deadline", self.starting_deadline.is_some()),
                ("timeout", self.timeout.is_some()),
            ];
            for (field, set) in orphans {
                if set {
                    problems.push(FieldError::new(
                        field,
                        "is for a cron pod only; add a `schedule` (e.g. \"*/5 * * * *\") or remove it",
                    ));
                }
            }
            return;
        };
        match parse_expression(schedule) {
            Ok(_) => {}
            Err(m) => problems.push(FieldError::new("schedule", m)),
        }
        if let Some(name) = &self.timezone
            && let Err(m) = zone_of(name)
        {
            problems.push(FieldError::new("timezone", m));
        }
        // `replicas` is 1 when absent (and as `dubectl get -o yaml` writes it back).
        if self.replicas != 1 {
            problems.push(FieldError::new(
                "replicas",
                "a cron pod (`schedule`) keeps no replicas: it starts a container at each tick; remove `replicas` or `schedule`",
            ));
        }
        if self.access.is_some() {
            problems.push(FieldError::new(
                "access",
                "a cron pod (`schedule`) is not routed: its runs get no traffic; remove `access` or `schedule`",
            ));
        }
        if !self.expose.is_empty() {
            problems.push(FieldError::new(
                "expose",
                "a cron pod (`schedule`) exposes no port: its runs get no traffic; remove `expose` or `schedule`",
            ));
        }
        if let Some(history) = self.history
            && !(1..=MAX_CRON_HISTORY).contains(&history)
        {
            problems.push(FieldError::new(
                "history",
                format!(
                    "{history} is not between 1 and {MAX_CRON_HISTORY} (exited runs kept with their exit code and log)"
                ),
            ));
        }
        if let Some(deadline) = self.starting_deadline
            && !(Duration::from_secs(1)..=Duration::from_secs(24 * 3600)).contains(&deadline)
        {
            problems.push(FieldError::new(
                "starting_deadline",
                "must be between 1s and 24h, e.g. \"5m\"",
            ));
        }
        if let Some(timeout) = self.timeout
            && !(Duration::from_secs(1)..=Duration::from_secs(7 * 24 * 3600)).contains(&timeout)
        {
            problems.push(FieldError::new("timeout", "must be between 1s and 7d, e.g. \"30m\""));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(yaml_tail: &str) -> Result<Vec<PodSpec>, crate::SpecError> {
        crate::parse_specs(&format!("name: job\nimage: busybox:1\n{yaml_tail}"))
    }

    fn field_of(result: Result<Vec<PodSpec>, crate::SpecError>) -> String {
        match result {
            Ok(specs) => panic!("accepted: {specs:?}"),
            Err(e) => e.field().unwrap_or_default(),
        }
    }

    #[test]
    fn a_cron_pod_parses_with_its_defaults() {
        // What the contract test's hooks send (tests/contract/dubernetes_hooks.py).
        for expression in [
            "* * * * *",
            "30 2 * * MON-FRI",
            "0 0 1 * *",
            "@hourly",
            "0-30/10 9-17 * JAN-JUN 1",
        ] {
            for zone in [
                "UTC",
                "Europe/Paris",
                "America/New_York",
                "Asia/Tokyo",
                "Australia/Lord_Howe",
            ] {
                assert!(CronSchedule::new(expression, Some(zone)).is_ok(), "{expression} {zone}");
            }
        }
        assert!(cron("schedule: \"0 9 * * MON#1\"\n").is_ok());
        let specs = cron("schedule: \"*/5 * * * *\"\n").expect("valid");
        let spec = &specs[0];
        assert!(spec.is_cron());
        assert_eq!(spec.desired_replicas(), 0);
        assert_eq!(spec.cron_concurrency(), Concurrency::Forbid);
        assert_eq!(spec.cron_history(), DEFAULT_CRON_HISTORY);
        assert_eq!(spec.starting_deadline(), DEFAULT_STARTING_DEADLINE);
        let full = cron(
            "schedule: \"30 2 * * MON-FRI\"\ntimezone: Europe/Paris\nconcurrency: replace\nhistory: 10\nstarting_deadline: 2m\ntimeout: 1h\n",
        )
        .expect("valid");
        assert_eq!(full[0].cron_concurrency(), Concurrency::Replace);
        assert_eq!(full[0].cron_history(), 10);
        // Written back as `dubectl get -o yaml` does (replicas: 1), it is accepted again.
        let yaml = serde_yaml_ng::to_string(&full[0]).expect("yaml");
        assert!(crate::parse_specs(&yaml).is_ok(), "{yaml}");
        assert!(PodSpec::new("web", "nginx:1").desired_replicas() == 1);
    }

    #[test]
    fn bad_cron_input_is_refused_naming_the_field() {
        for (tail, field) in [
            ("schedule: \"* * *\"\n", "schedule"),
            ("schedule: \"5/5 * * * *\"\n", "schedule"),
            ("schedule: \"61 * * * *\"\n", "schedule"),
            ("schedule: \"* * * * * *\"\n", "schedule"),
            ("schedule: \"0 0 30 2 *\"\n", "schedule"),
            ("schedule: \"\"\n", "schedule"),
            ("schedule: \"* * * * *\"\nreplicas: 3\n", "replicas"),
            ("schedule: \"* * * * *\"\nreplicas: 0\n", "replicas"),
            ("schedule: \"* * * * *\"\naccess: {host: a.local}\n", "access"),
            (
                "schedule: \"* * * * *\"\nexpose: [{port: 5432, listen: \"15432\"}]\n",
                "expose",
            ),
            ("schedule: \"* * * * *\"\ntimezone: Mars/Olympus\n", "timezone"),
            ("schedule: \"* * * * *\"\nhistory: 0\n", "history"),
            ("schedule: \"* * * * *\"\nhistory: 51\n", "history"),
            ("schedule: \"* * * * *\"\nstarting_deadline: 0s\n", "starting_deadline"),
            ("schedule: \"* * * * *\"\ntimeout: 0s\n", "timeout"),
            ("schedule: \"* * * * *\"\nconcurrency: sometimes\n", "concurrency"),
            ("history: 3\n", "history"),
            ("timezone: UTC\n", "timezone"),
        ] {
            assert_eq!(field_of(cron(tail)), field, "{tail}");
        }
    }

    #[test]
    fn ticks_follow_the_expression_in_its_zone() {
        let every5 = CronSchedule::new("*/5 * * * *", None).expect("valid");
        // 2026-12-07T11:17:30Z
        let now = 1_796_642_250;
        assert_eq!(every5.latest_at_or_before(now), Some(1_796_642_100)); // 11:15
        assert_eq!(every5.next_after(now), Some(1_796_642_400)); // 11:20
        assert_eq!(every5.latest_at_or_before(1_796_642_100), Some(1_796_642_100));
        // 02:30 in Paris (UTC+1 in December) is 01:30 UTC.
        let paris = CronSchedule::new("30 2 * * *", Some("Europe/Paris")).expect("valid");
        let next = paris.next_after(now).expect("a tick");
        assert_eq!(next % 86_400, 5_400, "01:30 UTC");
        // The spring DST change in Paris (2027-03-28 02:00 -> 03:00) skips 02:30:
        // that tick runs as the clock jumps, at 03:00 CEST (01:00 UTC).
        let spring = 1_806_184_800; // 2027-03-27T22:00:00Z, 23:00 in Paris
        assert_eq!(paris.next_after(spring), Some(1_806_195_600));
    }
}
