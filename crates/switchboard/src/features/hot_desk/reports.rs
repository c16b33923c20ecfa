//! The usage report (seed "Monitoring & Reporting"), computed from the login history of
//! the period: a few thousand rows a day at most, so in memory.

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, Timelike};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::hot_desk::HistoryRow;
use crate::time::Timestamp;

/// How many of the most-used devices the report lists.
const TOP_DEVICES: usize = 10;

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Report {
    #[schema(value_type = String, format = DateTime)]
    pub from: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub to: Timestamp,
    /// Sessions open now.
    pub active_sessions: usize,
    /// Logins that began in the period.
    pub logins: usize,
    /// Per day of the period with activity, in `timezone`.
    pub per_day: Vec<DayCount>,
    /// Mean length of the sessions of the period that have ended, in seconds.
    pub average_session_seconds: Option<f64>,
    pub most_used_devices: Vec<DeviceCount>,
    /// Logins per hour of the day (0–23, `timezone`), all 24 hours.
    pub peak_hours: Vec<HourCount>,
    /// Failed hot-desk PINs in the period.
    pub pin_failures: i64,
    /// Sessions of the period ended by the auto-logout worker.
    pub auto_logouts: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DayCount {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub logins: usize,
    pub logouts: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DeviceCount {
    pub device_id: String,
    pub logins: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct HourCount {
    pub hour: u32,
    pub logins: usize,
}

pub(super) fn build(
    history: &[HistoryRow],
    active_sessions: usize,
    pin_failures: i64,
    from: Timestamp,
    to: Timestamp,
    tz: chrono_tz::Tz,
) -> Report {
    let local = |t: Timestamp| t.to_datetime().with_timezone(&tz);
    let day = |t: Timestamp| {
        let d = local(t);
        format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
    };
    let mut per_day: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut devices: HashMap<&str, (usize, &str)> = HashMap::new();
    let mut hours = [0usize; 24];
    let (mut ended, mut total_ms, mut auto_logouts) = (0u64, 0i64, 0usize);
    for h in history {
        per_day.entry(day(h.logged_in_at)).or_default().0 += 1;
        hours[local(h.logged_in_at).hour() as usize] += 1;
        let device = devices
            .entry(h.device_id.as_str())
            .or_insert((0, &h.device_label));
        device.0 += 1;
        if let Some(out) = h.logged_out_at {
            if out >= from && out < to {
                per_day.entry(day(out)).or_default().1 += 1;
            }
            ended += 1;
            total_ms += out.0 - h.logged_in_at.0;
        }
        if h.logout_reason.as_deref() == Some("auto_logout") {
            auto_logouts += 1;
        }
    }
    let mut most_used: Vec<DeviceCount> = devices
        .into_values()
        .map(|(logins, label)| DeviceCount {
            device_id: label.to_owned(),
            logins,
        })
        .collect();
    most_used.sort_by(|a, b| b.logins.cmp(&a.logins).then(a.device_id.cmp(&b.device_id)));
    most_used.truncate(TOP_DEVICES);
    Report {
        from,
        to,
        active_sessions,
        logins: history.len(),
        per_day: per_day
            .into_iter()
            .map(|(date, (logins, logouts))| DayCount {
                date,
                logins,
                logouts,
            })
            .collect(),
        average_session_seconds: (ended > 0).then(|| total_ms as f64 / ended as f64 / 1000.0),
        most_used_devices: most_used,
        peak_hours: (0..24)
            .map(|hour| HourCount {
                hour,
                logins: hours[hour as usize],
            })
            .collect(),
        pin_failures,
        auto_logouts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(device: &str, login_ms: i64, logout: Option<(i64, &str)>) -> HistoryRow {
        HistoryRow {
            session_id: format!("{device}-{login_ms}"),
            extension: "1001".into(),
            device_id: device.to_lowercase(),
            device_label: device.into(),
            ip_address: None,
            logged_in_at: Timestamp(login_ms),
            logged_out_at: logout.map(|(t, _)| Timestamp(t)),
            logout_reason: logout.map(|(_, r)| r.into()),
        }
    }

    #[test]
    fn counts_days_hours_devices_and_lengths() {
        const H: i64 = 3_600_000;
        // 2026-01-01T00:00:00Z
        let day = 1_767_225_600_000;
        let history = [
            row("A", day + 8 * H, Some((day + 10 * H, "user"))),
            row("A", day + 9 * H, Some((day + 9 * H + H / 2, "auto_logout"))),
            row("B", day + 24 * H + 8 * H, None),
        ];
        let r = build(
            &history,
            1,
            3,
            Timestamp(day),
            Timestamp(day + 48 * H),
            chrono_tz::UTC,
        );
        assert_eq!(r.logins, 3);
        assert_eq!(
            r.per_day,
            [
                DayCount {
                    date: "2026-01-01".into(),
                    logins: 2,
                    logouts: 2
                },
                DayCount {
                    date: "2026-01-02".into(),
                    logins: 1,
                    logouts: 0
                },
            ]
        );
        assert_eq!(r.average_session_seconds, Some(4500.0));
        assert_eq!(
            r.most_used_devices[0],
            DeviceCount {
                device_id: "A".into(),
                logins: 2
            }
        );
        assert_eq!(r.peak_hours[8].logins, 2);
        assert_eq!(r.peak_hours[9].logins, 1);
        assert_eq!(r.peak_hours.len(), 24);
        assert_eq!(
            (r.auto_logouts, r.pin_failures, r.active_sessions),
            (1, 3, 1)
        );

        let paris = build(
            &history,
            1,
            3,
            Timestamp(day),
            Timestamp(day + 48 * H),
            chrono_tz::Europe::Paris,
        );
        assert_eq!(paris.peak_hours[9].logins, 2, "08:00 UTC is 09:00 in Paris");
    }
}
