//! Exemptions from stop: adding, removing, listing.

use chrono::{DateTime, Utc};
use ec2_scheduler_core::Exemption;

use crate::env::App;
use crate::error::{Error, Result};

impl App {
    /// Exempts `instance` from stops until `until` (or until removed), as asked by
    /// `by`.
    ///
    /// # Errors
    /// An expiry in the past, an instance id of the wrong shape, or a store failure.
    pub async fn exempt(
        &self,
        instance: &str,
        until: Option<DateTime<Utc>>,
        reason: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Exemption> {
        if let Some(u) = until.filter(|u| *u <= now) {
            return Err(Error::Invalid(format!(
                "--until {} is in the past: the exemption would never apply",
                u.to_rfc3339()
            )));
        }
        let e = Exemption {
            instance_id: instance.to_string(),
            until,
            reason: reason.to_string(),
            created_by: Some(by.to_string()),
        };
        e.check()?;
        self.store.add_exemption(&e).await?;
        Ok(e)
    }

    /// Removes the exemptions of `instance`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when it has none.
    pub async fn unexempt(&self, instance: &str) -> Result<()> {
        if self.store.remove_exemption(instance).await? {
            Ok(())
        } else {
            Err(Error::NotFound(format!("{instance} has no exemption")))
        }
    }

    /// The stored exemptions.
    pub async fn exemptions(&self) -> Result<Vec<Exemption>> {
        Ok(self.store.exemptions().await?)
    }
}
