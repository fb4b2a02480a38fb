//! Effective policy and subscriptions per group, cached until the revision counters move.
//!
//! The counters are bumped by database triggers, including for rows edited by hand in SQL, and are
//! read once per planning step: a change is seen at the next command a device is sent, on every node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::warn;

use crate::soap::{Params, Subscriptions};
use crate::store::{Revisions, Store, StoreError};
use crate::sync::policy;

/// What a device in a group should have, with the digests the planner compares.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupState {
    pub policy: Params,
    pub policy_digest: Vec<u8>,
    pub subscriptions: Subscriptions,
    pub subscriptions_digest: Vec<u8>,
}

#[derive(Default)]
pub struct PolicyCache {
    inner: Mutex<(Revisions, HashMap<i64, Arc<GroupState>>)>,
}

impl PolicyCache {
    /// The state of `group` as of `revisions` (read now when `None`).
    pub async fn get(
        &self,
        store: &dyn Store,
        group: i64,
        revisions: Option<Revisions>,
    ) -> Result<Arc<GroupState>, StoreError> {
        let revisions = match revisions {
            Some(r) => r,
            None => store.revisions().await?,
        };
        {
            let mut inner = self.inner.lock().unwrap();
            if inner.0 != revisions {
                *inner = (revisions, HashMap::new());
            }
            if let Some(state) = inner.1.get(&group) {
                return Ok(state.clone());
            }
        }
        let chain = store.group_chain(group).await?;
        let rows = store.policy_rows(&chain).await?;
        let (tree, skipped) = policy::effective_policy(&chain, &rows);
        for s in skipped {
            warn!(group = s.group_id, path = %s.path, reason = %s.reason, "policy row not applied");
        }
        let subscriptions =
            policy::effective_subscriptions(&store.subscription_rows(&chain).await?);
        let state = Arc::new(GroupState {
            policy_digest: policy::digest(&tree),
            policy: tree,
            subscriptions_digest: policy::digest(&subscriptions),
            subscriptions,
        });
        let mut inner = self.inner.lock().unwrap();
        // Only cache what was computed from the revisions still current.
        if inner.0 == revisions {
            inner.1.insert(group, state.clone());
        }
        Ok(state)
    }
}
