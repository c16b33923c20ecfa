//! The registered-phone inventory (seed 004, spec 02): which devices registered for
//! which extension. The registrar records sightings; the API lists them.

pub mod mac;

use serde::Serialize;
use utoipa::ToSchema;

use super::ServiceError;
use crate::store::Db;
use crate::store::registered_phones::{self as store, PhoneFilter, PhoneRow};
use crate::time::Timestamp;

/// One device as the API shows it (seed 004 fields plus `registered_now`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RegisteredPhone {
    pub id: i64,
    /// 12 lowercase hex digits, a `webrtc-…` marker, or null when the device gave none.
    pub mac_address: Option<String>,
    pub extension_number: String,
    pub user_agent: Option<String>,
    pub ip_address: String,
    #[schema(value_type = String, format = DateTime)]
    pub first_registered: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub last_registered: Timestamp,
    pub contact_uri: Option<String>,
    /// A live registration of the extension comes from this device now.
    pub registered_now: bool,
}

impl From<PhoneRow> for RegisteredPhone {
    fn from(r: PhoneRow) -> Self {
        Self {
            id: r.id,
            mac_address: r.mac_address,
            extension_number: r.extension_number,
            user_agent: r.user_agent,
            ip_address: r.ip_address,
            first_registered: r.first_registered,
            last_registered: r.last_registered,
            contact_uri: r.contact_uri,
            registered_now: r.registered_now,
        }
    }
}

#[derive(Clone)]
pub struct RegisteredPhoneService {
    db: Db,
}

impl RegisteredPhoneService {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub async fn list(&self, filter: &PhoneFilter) -> Result<Vec<RegisteredPhone>, ServiceError> {
        let rows = store::list(self.db.pool(), filter, Timestamp::now()).await?;
        Ok(rows.into_iter().map(RegisteredPhone::from).collect())
    }

    /// Devices with this MAC, given in any common format.
    pub async fn by_mac(&self, mac_text: &str) -> Result<Vec<RegisteredPhone>, ServiceError> {
        let mac = mac::normalise(mac_text).ok_or_else(|| {
            ServiceError::invalid(
                "mac",
                format!("`{mac_text}` is not a MAC address such as 00:15:65:12:34:56"),
            )
        })?;
        self.list(&PhoneFilter {
            mac_address: Some(mac),
            ..Default::default()
        })
        .await
    }

    pub async fn by_ip(&self, ip: &str) -> Result<Vec<RegisteredPhone>, ServiceError> {
        if ip.parse::<std::net::IpAddr>().is_err() && ip != "webrtc" {
            return Err(ServiceError::invalid(
                "ip",
                format!("`{ip}` is not an IP address"),
            ));
        }
        self.list(&PhoneFilter {
            ip_address: Some(ip.to_owned()),
            ..Default::default()
        })
        .await
    }

    pub async fn delete(&self, id: i64) -> Result<(), ServiceError> {
        if !store::delete(self.db.pool(), id).await? {
            return Err(ServiceError::not_found(format!("registered phone {id}")));
        }
        tracing::info!(phone = id, "registered phone removed from the inventory");
        Ok(())
    }
}
