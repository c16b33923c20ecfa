//! How a device is named: by its MAC address in any of the formats phones and admins
//! write (`00:15:65:12:34:56`, `00-15-65-…`, `001565123456`, `0015.6512.3456`), matched
//! in normalised form, or by another stable id the caller chooses, matched as given.

use crate::features::ServiceError;
use crate::features::registered_phones::mac;

/// The longest device id accepted.
const MAX_DEVICE_ID: usize = 128;

/// The key `device_id` is matched by: its MAC in normalised form (12 lowercase hex
/// digits, what registrations record too), else the id itself, trimmed.
pub fn device_key(device_id: &str) -> Result<String, ServiceError> {
    let id = device_id.trim();
    if id.is_empty() || id.len() > MAX_DEVICE_ID || id.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "device_id",
            format!(
                "a MAC address (00:15:65:12:34:56) or another id of at most {MAX_DEVICE_ID} characters"
            ),
        ));
    }
    Ok(mac::normalise(id).unwrap_or_else(|| id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mac_format_is_one_device_and_other_ids_stay_as_given() {
        let key = device_key("00:15:65:12:34:56").unwrap();
        for form in [
            "00-15-65-12-34-56",
            "001565123456",
            "0015.6512.3456",
            " 00:15:65:12:34:56 ",
            "00:15:65:12:34:56".to_uppercase().as_str(),
        ] {
            assert_eq!(device_key(form).unwrap(), key, "{form}");
        }
        assert_eq!(key, "001565123456");
        assert_eq!(device_key("desk-4.12").unwrap(), "desk-4.12");
        assert!(device_key("").is_err());
        assert!(device_key("a\nb").is_err());
    }
}
