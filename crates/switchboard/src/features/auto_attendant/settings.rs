//! The attendant's settings: config.yml's `auto_attendant` section and the body of
//! `GET/PUT /api/auto-attendant` have this one shape, and one set of rules
//! ([`Settings::problems`]) checks both.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::features::extensions::rules::check_number;

/// The longest wait for a key after the menu that the settings allow.
pub const MAX_TIMEOUT_SECONDS: u64 = 60;

/// What a menu key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MenuAction {
    /// Ring extension `target` (its forwarding and voicemail apply when it does not
    /// answer).
    Extension,
    /// Send the call to queue `target` through the dial plan.
    Queue,
    /// Leave a message in `target`'s mailbox.
    Voicemail,
    /// Ring the operator.
    Operator,
}

/// One key of the menu.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MenuOption {
    /// The key: `0`–`9` or `*` (`#` ends a dialled extension number).
    pub digit: String,
    pub action: MenuAction,
    /// The extension, queue or mailbox number; none for `operator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// How extension 0 answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Settings {
    /// Off: calls to 0 go straight to the operator, without a greeting.
    pub enabled: bool,
    /// Who a caller reaches with the `operator` key, after a second timeout or invalid
    /// key, and when the attendant is off.
    pub operator: String,
    /// Seconds the attendant waits for a key after the menu before it repeats it.
    pub timeout_seconds: u64,
    /// Callers may dial any extension number (ended by `#` or a 2 s pause) instead of a
    /// menu key.
    pub dial_by_extension: bool,
    pub menu: Vec<MenuOption>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: true,
            operator: "1001".into(),
            timeout_seconds: 5,
            dial_by_extension: true,
            menu: vec![MenuOption {
                digit: "0".into(),
                action: MenuAction::Operator,
                target: None,
            }],
        }
    }
}

/// A rule a setting breaks: `field` is its path (`menu[1].digit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub value: String,
    pub message: String,
}

impl Settings {
    /// Every rule the settings break, in field order.
    pub fn problems(&self) -> Vec<Problem> {
        let mut found = Vec::new();
        let mut bad = |field: String, value: &str, message: &str| {
            found.push(Problem {
                field,
                value: value.to_owned(),
                message: message.to_owned(),
            });
        };
        if check_number(&self.operator).is_err() || self.operator == "0" {
            bad(
                "operator".into(),
                &self.operator,
                "an extension number other than 0",
            );
        }
        if !(1..=MAX_TIMEOUT_SECONDS).contains(&self.timeout_seconds) {
            bad(
                "timeout_seconds".into(),
                &self.timeout_seconds.to_string(),
                "1 to 60 seconds",
            );
        }
        for (i, option) in self.menu.iter().enumerate() {
            let is_key = matches!(option.digit.as_bytes(), [b'0'..=b'9' | b'*']);
            if !is_key {
                bad(
                    format!("menu[{i}].digit"),
                    &option.digit,
                    "one key: 0-9 or *",
                );
            } else if self.menu[..i].iter().any(|o| o.digit == option.digit) {
                bad(
                    format!("menu[{i}].digit"),
                    &option.digit,
                    "a key no other menu entry uses",
                );
            }
            let field = format!("menu[{i}].target");
            match (option.action, &option.target) {
                (MenuAction::Operator, None) => {}
                (MenuAction::Operator, Some(t)) => {
                    bad(field, t, "no target: the operator is `operator`")
                }
                (_, None) => bad(field, "", "the extension, queue or mailbox number"),
                (_, Some(t)) if check_number(t).is_err() || t == "0" => bad(
                    field,
                    t,
                    "an extension, queue or mailbox number other than 0",
                ),
                (_, Some(_)) => {}
            }
        }
        found
    }

    /// The menu entry of `key`, if any.
    pub fn option(&self, key: &str) -> Option<&MenuOption> {
        self.menu.iter().find(|o| o.digit == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option(digit: &str, action: MenuAction, target: Option<&str>) -> MenuOption {
        MenuOption {
            digit: digit.into(),
            action,
            target: target.map(Into::into),
        }
    }

    #[test]
    fn the_defaults_are_valid_and_send_0_to_the_operator() {
        let s = Settings::default();
        assert_eq!(s.problems(), vec![]);
        assert_eq!(s.option("0").map(|o| o.action), Some(MenuAction::Operator));
    }

    #[test]
    fn each_broken_rule_names_its_field() {
        let s = Settings {
            operator: "0".into(),
            timeout_seconds: 0,
            menu: vec![
                option("1", MenuAction::Extension, Some("1002")),
                option("1", MenuAction::Voicemail, Some("1002")),
                option("#", MenuAction::Operator, None),
                option("12", MenuAction::Queue, Some("8000")),
                option("3", MenuAction::Extension, None),
                option("4", MenuAction::Operator, Some("1001")),
                option("5", MenuAction::Extension, Some("../x")),
            ],
            ..Settings::default()
        };
        let fields: Vec<String> = s.problems().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "operator",
                "timeout_seconds",
                "menu[1].digit",
                "menu[2].digit",
                "menu[3].digit",
                "menu[4].target",
                "menu[5].target",
                "menu[6].target",
            ]
        );
    }

    #[test]
    fn the_config_shape_reads_from_yaml() {
        let s: Settings = serde_saphyr::from_str(
            "operator: '1002'\nmenu:\n  - {digit: '1', action: extension, target: '1003'}\n",
        )
        .unwrap();
        assert_eq!(s.operator, "1002");
        assert_eq!(s.timeout_seconds, 5);
        assert_eq!(
            s.menu,
            vec![option("1", MenuAction::Extension, Some("1003"))]
        );
    }
}
