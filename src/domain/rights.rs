//! Rights: functional areas with Read, Write and Execute, granted through built-in roles, and the
//! caller every admin operation is checked against.

use serde::{Deserialize, Serialize};

use super::{DomainError, Result};
use crate::store::Actor;

/// A part of the server an account may have rights on, named like the seeds name theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FuncArea {
    /// Devices, groups and devices' settings.
    #[serde(rename = "FUNC_AREA_DEVICES")]
    Devices,
    /// Policy rows and event subscriptions.
    #[serde(rename = "FUNC_AREA_POLICY")]
    Policy,
    /// Device events and events received from other systems.
    #[serde(rename = "FUNC_AREA_EVENTS")]
    Events,
    /// Update files served to devices.
    #[serde(rename = "FUNC_AREA_UPDATES")]
    Updates,
    /// Accounts, other accounts' tokens, the audit trail.
    #[serde(rename = "FUNC_AREA_ADMINS")]
    Admins,
    /// Product backend commands (seed 000): consoles need Execute here.
    #[serde(rename = "FUNC_AREA_PRODUCT_INTEGRATION")]
    ProductIntegration,
    /// Sending product backend commands (Execute) and reading them and their outcomes (Read).
    #[serde(rename = "FUNC_AREA_BACKEND_COMMANDS")]
    BackendCommands,
}

impl FuncArea {
    pub const ALL: [FuncArea; 7] = [
        FuncArea::Devices,
        FuncArea::Policy,
        FuncArea::Events,
        FuncArea::Updates,
        FuncArea::Admins,
        FuncArea::ProductIntegration,
        FuncArea::BackendCommands,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FuncArea::Devices => "FUNC_AREA_DEVICES",
            FuncArea::Policy => "FUNC_AREA_POLICY",
            FuncArea::Events => "FUNC_AREA_EVENTS",
            FuncArea::Updates => "FUNC_AREA_UPDATES",
            FuncArea::Admins => "FUNC_AREA_ADMINS",
            FuncArea::ProductIntegration => "FUNC_AREA_PRODUCT_INTEGRATION",
            FuncArea::BackendCommands => "FUNC_AREA_BACKEND_COMMANDS",
        }
    }
}

/// What a right allows in an area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Access {
    Read,
    Write,
    Execute,
}

const R: u8 = 1;
const W: u8 = 2;
const X: u8 = 4;

impl Access {
    fn bit(self) -> u8 {
        match self {
            Access::Read => R,
            Access::Write => W,
            Access::Execute => X,
        }
    }
}

/// The built-in roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Administrator,
    /// Runs the fleet: devices, groups, policy, updates, product backend commands; reads events;
    /// no accounts.
    Operator,
    /// Reads everything, the audit trail included; changes nothing.
    Auditor,
    /// A machine: sends events in, and serves product backend commands as a console.
    Integration,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Administrator,
        Role::Operator,
        Role::Auditor,
        Role::Integration,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Integration => "integration",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The rights a role grants in an area, as Read/Write/Execute bits.
    fn grants(self, area: FuncArea) -> u8 {
        use FuncArea::*;
        match (self, area) {
            (Role::Administrator, _) => R | W | X,
            (Role::Operator, Devices | Policy | Updates) => R | W | X,
            (Role::Operator, BackendCommands) => R | X,
            (Role::Operator, Events) => R,
            (Role::Operator, Admins | ProductIntegration) => 0,
            (Role::Auditor, _) => R,
            (Role::Integration, Events) => W,
            (Role::Integration, ProductIntegration) => X,
            (Role::Integration, _) => 0,
        }
    }

    pub fn allows(self, area: FuncArea, access: Access) -> bool {
        self.grants(area) & access.bit() != 0
    }
}

/// Who is calling an admin operation: an account (and the token it used), from an address, or the
/// server itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub account_id: Option<i64>,
    pub name: String,
    pub role: Role,
    /// The API token's subject, when the call came with one.
    pub token: Option<String>,
    pub address: Option<String>,
}

impl Caller {
    /// The server acting for whoever runs it on its own machine (the command line, start-up):
    /// every right, no account.
    pub fn system(name: &str) -> Caller {
        Caller {
            account_id: None,
            name: name.to_string(),
            role: Role::Administrator,
            token: None,
            address: None,
        }
    }

    /// Refuses the call unless the caller's role grants `access` in `area`.
    pub fn require(&self, area: FuncArea, access: Access) -> Result<()> {
        if self.role.allows(area, access) {
            Ok(())
        } else {
            Err(DomainError::Forbidden(format!(
                "the {} role has no {access:?} right on {}",
                self.role.name(),
                area.name()
            )))
        }
    }

    /// How the audit trail names this caller.
    pub fn actor(&self) -> Actor {
        Actor {
            account: self.name.clone(),
            token: self.token.clone(),
            address: self.address.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_grants_what_it_says() {
        use Access::*;
        use FuncArea::*;
        for area in FuncArea::ALL {
            for access in [Read, Write, Execute] {
                assert!(Role::Administrator.allows(area, access));
                assert_eq!(Role::Auditor.allows(area, access), access == Read);
            }
        }
        assert!(Role::Operator.allows(Devices, Write) && Role::Operator.allows(Policy, Write));
        assert!(Role::Operator.allows(Events, Read) && !Role::Operator.allows(Events, Write));
        assert!(!Role::Operator.allows(Admins, Read));
        assert!(Role::Integration.allows(Events, Write));
        assert!(Role::Integration.allows(ProductIntegration, Execute));
        assert!(!Role::Integration.allows(Devices, Read));
        assert!(!Role::Operator.allows(ProductIntegration, Execute));
        assert!(Role::Operator.allows(BackendCommands, Execute));
        assert!(!Role::Integration.allows(BackendCommands, Execute));
        assert!(!Role::Integration.allows(BackendCommands, Read));
        let names: Vec<&str> = FuncArea::ALL.iter().map(|a| a.name()).collect();
        assert!(names.contains(&"FUNC_AREA_PRODUCT_INTEGRATION"));
        assert_eq!(Role::parse("auditor"), Some(Role::Auditor));
        assert_eq!(Role::parse("root"), None);
    }
}
