//! Which records a `search` (or a report's period) selects.
//!
//! Every filter is parsed and checked once, before the log is read, so a typo
//! (`--action alow`, `--class reads`) is an error rather than an empty result
//! that looks like evidence of absence.

use super::records::Record;
use crate::classify::Class;
use std::time::{Duration, SystemTime};

/// A bad filter value.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("`{0}` is not a time: give RFC 3339 (`2026-11-21T20:53:15Z`), a date (`2026-11-21`) or an age (`2h`, `3days`)")]
    Time(String),
    #[error("`{0}` is not an action: use allow, deny or require_approval")]
    Action(String),
    #[error(
        "`{0}` is not an outcome: use ok, denied, error, not_executed or a 5-character SQLSTATE"
    )]
    Outcome(String),
    #[error("`{0}` is not a statement class: use one of {1}")]
    Class(String, String),
    #[error("`{file}:{line}` has no valid `time` (`{time}`)")]
    RecordTime {
        file: String,
        line: u64,
        time: String,
    },
}

/// Which end of a period a time bounds: a bare date means the start of that
/// day (UTC) for `--since` and its end for `--until`.
#[derive(Clone, Copy)]
pub enum Bound {
    Since,
    Until,
}

/// Parses `--since`/`--until`: RFC 3339 (with `Z` or an offset such as
/// `+02:00`), a date, or an age counted back from `now`.
pub fn parse_time(s: &str, bound: Bound, now: SystemTime) -> Result<SystemTime, FilterError> {
    let bad = || FilterError::Time(s.to_owned());
    let t = s.trim();
    if t.len() == 10 && t.as_bytes()[4] == b'-' && t.as_bytes()[7] == b'-' {
        let day = humantime::parse_rfc3339(&format!("{t}T00:00:00Z")).map_err(|_| bad())?;
        return Ok(match bound {
            Bound::Since => day,
            // The last instant of the day: the period is inclusive at both ends.
            Bound::Until => day + Duration::from_secs(86_400) - Duration::from_nanos(1),
        });
    }
    if t.contains('-') && t.contains(':') {
        return parse_rfc3339_offset(t).ok_or_else(bad);
    }
    let age = humantime::parse_duration(t).map_err(|_| bad())?;
    now.checked_sub(age).ok_or_else(bad)
}

/// RFC 3339 with `Z` or a numeric offset; `humantime` only knows UTC.
fn parse_rfc3339_offset(t: &str) -> Option<SystemTime> {
    // `…[+-]HH:MM` after the time part; checked first because the weak
    // parser reads `09.15+02:00` as a fraction and drops the offset.
    let split = t.len().checked_sub(6).filter(|&i| t.is_char_boundary(i));
    let (head, tail, sign) = match split.map(|i| t.split_at(i)) {
        Some((head, tail)) if tail.starts_with('+') => (head, tail, 1i64),
        Some((head, tail)) if tail.starts_with('-') => (head, tail, -1),
        _ => return humantime::parse_rfc3339_weak(t.trim_end_matches(['Z', 'z'])).ok(),
    };
    let (h, m) = tail[1..].split_once(':')?;
    let offset = (h.parse::<i64>().ok()? * 60 + m.parse::<i64>().ok()?) * 60 * sign;
    let local = humantime::parse_rfc3339_weak(head).ok()?;
    // Local time = UTC + offset, so UTC = local − offset.
    if offset >= 0 {
        local.checked_sub(Duration::from_secs(offset as u64))
    } else {
        local.checked_add(Duration::from_secs(offset.unsigned_abs()))
    }
}

/// A record's own `time`, parsed.
pub fn record_time(rec: &Record<'_>) -> Option<SystemTime> {
    humantime::parse_rfc3339(rec.time.as_deref()?).ok()
}

/// A closed period `[since, until]`; either end may be open.
#[derive(Default, Clone, Copy)]
pub struct Period {
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
}

impl Period {
    pub fn parse(
        since: Option<&str>,
        until: Option<&str>,
        now: SystemTime,
    ) -> Result<Period, FilterError> {
        Ok(Period {
            since: since
                .map(|s| parse_time(s, Bound::Since, now))
                .transpose()?,
            until: until
                .map(|s| parse_time(s, Bound::Until, now))
                .transpose()?,
        })
    }

    pub fn is_open(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }

    /// Whether the record falls in the period. A record without a readable
    /// `time` cannot be placed, which is an error rather than a silent skip.
    pub fn contains(&self, file: &str, line: u64, rec: &Record<'_>) -> Result<bool, FilterError> {
        if self.is_open() {
            return Ok(true);
        }
        let t = record_time(rec).ok_or_else(|| FilterError::RecordTime {
            file: file.to_owned(),
            line,
            time: rec.time.as_deref().unwrap_or("").to_owned(),
        })?;
        Ok(self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u))
    }
}

/// A statement outcome filter.
enum OutcomeFilter {
    Named(String),
    Sqlstate(String),
}

/// The `search` filters, checked; all must match (AND).
pub struct Filter {
    pub period: Period,
    agent: Option<String>,
    class: Option<&'static str>,
    action: Option<String>,
    outcome: Option<OutcomeFilter>,
}

impl Filter {
    pub fn new(
        agent: Option<&str>,
        period: Period,
        class: Option<&str>,
        action: Option<&str>,
        outcome: Option<&str>,
    ) -> Result<Filter, FilterError> {
        let class = class
            .map(|c| {
                Class::parse(c).map(Class::as_str).ok_or_else(|| {
                    let all: Vec<_> = Class::ALL.iter().map(|c| c.as_str()).collect();
                    FilterError::Class(c.to_owned(), all.join(", "))
                })
            })
            .transpose()?;
        let action = action
            .map(|a| match a {
                "allow" | "deny" | "require_approval" => Ok(a.to_owned()),
                _ => Err(FilterError::Action(a.to_owned())),
            })
            .transpose()?;
        let outcome = outcome
            .map(|o| match o {
                "ok" | "denied" | "error" | "not_executed" => Ok(OutcomeFilter::Named(o.into())),
                _ if o.len() == 5 && o.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                    Ok(OutcomeFilter::Sqlstate(o.to_ascii_uppercase()))
                }
                _ => Err(FilterError::Outcome(o.to_owned())),
            })
            .transpose()?;
        Ok(Filter {
            period,
            agent: agent.map(str::to_owned),
            class,
            action,
            outcome,
        })
    }

    /// Whether any filter applies only to statements, which excludes every
    /// other kind of record.
    fn statements_only(&self) -> bool {
        self.class.is_some() || self.action.is_some() || self.outcome.is_some()
    }

    pub fn matches(&self, file: &str, line: u64, rec: &Record<'_>) -> Result<bool, FilterError> {
        if let Some(a) = &self.agent {
            if rec.agent.as_deref() != Some(a.as_str()) {
                return Ok(false);
            }
        }
        if self.statements_only() {
            if !rec.is_statement() {
                return Ok(false);
            }
            if let Some(c) = self.class {
                if !rec.classes.iter().flatten().any(|x| x == c) {
                    return Ok(false);
                }
            }
            if let Some(a) = &self.action {
                if rec.action.as_deref() != Some(a.as_str()) {
                    return Ok(false);
                }
            }
            match &self.outcome {
                Some(OutcomeFilter::Named(o)) if rec.outcome_str() != Some(o.as_str()) => {
                    return Ok(false)
                }
                Some(OutcomeFilter::Sqlstate(s))
                    if !rec
                        .sqlstate
                        .as_deref()
                        .is_some_and(|x| x.eq_ignore_ascii_case(s)) =>
                {
                    return Ok(false)
                }
                _ => {}
            }
        }
        // Last: parsing the time is the dearest check.
        self.period.contains(file, line, rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn times() {
        let now = at("2026-11-21T12:00:00Z");
        let p = |s, b| parse_time(s, b, now).unwrap();
        assert_eq!(p("2026-11-21", Bound::Since), at("2026-11-21T00:00:00Z"));
        assert_eq!(
            p("2026-11-21", Bound::Until),
            at("2026-11-21T23:59:59.999999999Z")
        );
        assert_eq!(p("2h", Bound::Since), at("2026-11-21T10:00:00Z"));
        assert_eq!(
            p("2026-11-21T20:53:15.123456Z", Bound::Since),
            at("2026-11-21T20:53:15.123456Z")
        );
        assert_eq!(
            p("2026-11-21T22:00:00+02:00", Bound::Since),
            at("2026-11-21T20:00:00Z")
        );
        assert_eq!(
            p("2026-11-21T18:30:00.5-01:30", Bound::Since),
            at("2026-11-21T20:00:00.5Z")
        );
        assert!(parse_time("yesterday-ish", Bound::Since, now).is_err());
        assert!(parse_time("2026-13-45", Bound::Since, now).is_err());
    }
}
