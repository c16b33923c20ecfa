//! Time as the store keeps it (UTC milliseconds since the epoch) and as the API shows
//! it (RFC 3339 with `Z`).

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::{Serialize, Serializer};

/// A UTC instant in milliseconds since the Unix epoch (the epoch by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis())
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn plus_secs(self, secs: u64) -> Self {
        Self(self.0.saturating_add((secs as i64).saturating_mul(1000)))
    }

    pub fn plus(self, d: std::time::Duration) -> Self {
        Self(
            self.0
                .saturating_add(d.as_millis().min(i64::MAX as u128) as i64),
        )
    }

    pub fn minus(self, d: std::time::Duration) -> Self {
        Self(
            self.0
                .saturating_sub(d.as_millis().min(i64::MAX as u128) as i64),
        )
    }

    /// How long after `earlier` this is (zero when it is not later).
    pub fn since(self, earlier: Self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0).unwrap_or_default()
    }

    pub fn to_rfc3339(self) -> String {
        match self.rfc3339_in(&mut [0; 20]) {
            Some(text) => text.to_owned(),
            None => self
                .to_datetime()
                .to_rfc3339_opts(SecondsFormat::Secs, true),
        }
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` written into `buf` digit by digit, for years 0 to 9999
    /// (`None` otherwise): every call event carries two or three times, and chrono's
    /// formatter with its String was most of the cost of serializing one.
    fn rfc3339_in(self, buf: &mut [u8; 20]) -> Option<&str> {
        let t = self.to_datetime();
        let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
        let mut at = 0;
        let mut put = |value: u32, digits: u32, then: u8| {
            for d in (0..digits).rev() {
                buf[at] = b'0' + (value / 10u32.pow(d) % 10) as u8;
                at += 1;
            }
            buf[at] = then;
            at += 1;
        };
        put(year, 4, b'-');
        put(t.month(), 2, b'-');
        put(t.day(), 2, b'T');
        put(t.hour(), 2, b':');
        put(t.minute(), 2, b':');
        put(t.second(), 2, b'Z');
        std::str::from_utf8(buf).ok()
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.rfc3339_in(&mut [0; 20]) {
            Some(text) => s.serialize_str(text),
            None => s.serialize_str(&self.to_rfc3339()),
        }
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::DateTime,
            )))
            .examples([serde_json::json!("2025-12-07T08:00:00Z")])
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_rfc3339_utc() {
        assert_eq!(
            Timestamp(1_765_094_400_000).to_rfc3339(),
            "2025-12-07T08:00:00Z"
        );
        assert_eq!(Timestamp(0).plus_secs(90).0, 90_000);
        // Written by hand for years 0-9999, through chrono beyond: both as chrono writes.
        for millis in [
            0,
            999,
            1_765_094_400_999,
            -1,
            253_402_300_799_000,
            253_402_300_800_000,
            -62_167_219_200_000,
            -62_167_219_200_001,
        ] {
            let t = Timestamp(millis);
            let chrono = t.to_datetime().to_rfc3339_opts(SecondsFormat::Secs, true);
            assert_eq!(t.to_rfc3339(), chrono, "{millis}");
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{chrono}\""));
        }
    }
}
