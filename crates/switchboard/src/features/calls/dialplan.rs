//! The dial plan (spec 01, "Routing order"): what a dialled number means, in this
//! order: configured emergency numbers; feature codes; `*` + extension (that voicemail
//! box); `0`, the auto attendant; queue numbers; extensions (numeric and virtual);
//! otherwise not found (404). Pure: what exists is asked through [`Directory`], so the
//! call engine, the tests and later features (queues, hot-desking) share one order.

/// The feature codes a phone can dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureCode {
    /// `*55`: hot-desk login (05-hot-desking.md).
    HotDeskLogin,
    /// `*56`: hot-desk logout.
    HotDeskLogout,
    /// `*57`: hot-desk status.
    HotDeskStatus,
    /// `*78`: do not disturb on (09-dnd.md).
    DndOn,
    /// `*79`: do not disturb off.
    DndOff,
    /// `*97`: the caller's own voicemail.
    OwnVoicemail,
}

impl FeatureCode {
    pub const ALL: [(&'static str, FeatureCode); 6] = [
        ("*55", Self::HotDeskLogin),
        ("*56", Self::HotDeskLogout),
        ("*57", Self::HotDeskStatus),
        ("*78", Self::DndOn),
        ("*79", Self::DndOff),
        ("*97", Self::OwnVoicemail),
    ];

    fn parse(dialled: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(code, _)| *code == dialled)
            .map(|(_, f)| *f)
    }
}

/// Where a dialled number leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Emergency(String),
    Feature(FeatureCode),
    /// `*` + extension: leave a message in (or, with the PIN, listen to) that box.
    Voicemail(String),
    AutoAttendant,
    Queue(String),
    Extension(String),
    NotFound,
}

/// What exists, for the dial plan to ask.
pub trait Directory {
    fn is_emergency(&self, number: &str) -> bool;
    fn is_queue(&self, number: &str) -> bool;
    fn is_extension(&self, number: &str) -> bool;
}

/// The destination of `dialled` (the Request-URI's user part, escapes decoded).
/// In a phone number, visual separators that phones keep from a contact card (`-`,
/// `.`, spaces, parentheses) are ignored; a name (a virtual extension such as
/// `webrtc-admin`) is taken as it is.
pub fn route(dialled: &str, directory: &impl Directory) -> Destination {
    let digits: String = dialled
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | ' ' | '(' | ')'))
        .collect();
    let number = if digits
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | '*' | '#'))
    {
        digits
    } else {
        dialled.to_owned()
    };
    if directory.is_emergency(&number) {
        return Destination::Emergency(number);
    }
    if let Some(code) = FeatureCode::parse(&number) {
        return Destination::Feature(code);
    }
    if let Some(ext) = number.strip_prefix('*')
        && directory.is_extension(ext)
    {
        return Destination::Voicemail(ext.to_owned());
    }
    if number == "0" {
        return Destination::AutoAttendant;
    }
    if directory.is_queue(&number) {
        return Destination::Queue(number);
    }
    if directory.is_extension(&number) {
        return Destination::Extension(number);
    }
    Destination::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl Directory for Fixed {
        fn is_emergency(&self, n: &str) -> bool {
            matches!(n, "112" | "911" | "+49112")
        }
        fn is_queue(&self, n: &str) -> bool {
            n == "600"
        }
        fn is_extension(&self, n: &str) -> bool {
            matches!(n, "1001" | "1002" | "webrtc-admin" | "55" | "600")
        }
    }

    #[test]
    fn each_kind_of_number_goes_where_the_spec_orders() {
        let cases = [
            ("911", Destination::Emergency("911".into())),
            ("+49 112", Destination::Emergency("+49112".into())),
            ("*55", Destination::Feature(FeatureCode::HotDeskLogin)),
            ("*56", Destination::Feature(FeatureCode::HotDeskLogout)),
            ("*57", Destination::Feature(FeatureCode::HotDeskStatus)),
            ("*78", Destination::Feature(FeatureCode::DndOn)),
            ("*79", Destination::Feature(FeatureCode::DndOff)),
            ("*97", Destination::Feature(FeatureCode::OwnVoicemail)),
            ("*1001", Destination::Voicemail("1001".into())),
            ("0", Destination::AutoAttendant),
            ("600", Destination::Queue("600".into())),
            ("1002", Destination::Extension("1002".into())),
            ("10-02", Destination::Extension("1002".into())),
            (
                "webrtc-admin",
                Destination::Extension("webrtc-admin".into()),
            ),
            ("web-rtc", Destination::NotFound),
            ("9999", Destination::NotFound),
            ("*9999", Destination::NotFound),
            ("", Destination::NotFound),
        ];
        for (dialled, want) in cases {
            assert_eq!(route(dialled, &Fixed), want, "{dialled:?}");
        }
    }

    #[test]
    fn earlier_rules_win_over_later_ones() {
        // `*55` is a feature code even though extension 55 exists; a queue number
        // shadows an extension with the same number.
        assert_eq!(
            route("*55", &Fixed),
            Destination::Feature(FeatureCode::HotDeskLogin)
        );
        assert_eq!(route("600", &Fixed), Destination::Queue("600".into()));
    }
}
