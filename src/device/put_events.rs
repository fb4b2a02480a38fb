//! PutEvents: durable, deduplicated intake. The reply is sent only after the events are committed.

use std::net::SocketAddr;

use time::OffsetDateTime;
use tracing::{debug, warn};

use super::DeviceService;
use crate::error::DeviceError;
use crate::events;
use crate::soap::{EventInfo, Response};
use crate::store::Seen;

impl DeviceService {
    pub(super) async fn put_events(
        &self,
        session_id: &str,
        events: Vec<EventInfo>,
        peer: SocketAddr,
        now: OffsetDateTime,
    ) -> Result<Response, DeviceError> {
        let session = self.session(session_id, now).await?;
        let limit = self.config.max_events_per_call;
        if events.len() > limit {
            warn!(device = %session.device_id, count = events.len(), limit, "too many events in one call");
            return Err(DeviceError::BadParameter(format!(
                "too many events in one call: more than {limit}"
            )));
        }
        let stored: Vec<events::StoredEvent> = events.into_iter().map(events::normalize).collect();
        for e in stored
            .iter()
            .filter(|e| e.truncated || !e.odd_fields.is_empty())
        {
            warn!(device = %session.device_id, event_id = %e.event_id.escape_debug(), truncated = e.truncated,
                  odd_fields = ?e.odd_fields, "event kept with adjusted fields");
        }
        let seen = Seen {
            at: now,
            address: peer.ip().to_string(),
        };
        let received = stored.len();
        self.store
            .store_events(session.device, stored, &seen)
            .await?;
        debug!(device = %session.device_id, received, "events stored");
        Ok(Response::PutEvents { error: None })
    }
}
