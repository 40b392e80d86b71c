//! Per-account permissions: each function is a read or a write (its WIT `Access:` line, see
//! [`crate::catalog`]), and an account allows, asks or denies each kind. Reads default to
//! allow, writes to ask. With no one to ask, `ask` is refused; a forced run lifts `ask` and
//! `deny`. Every surface (Lua, `kosmo integrations:call`, MCP) decides through [`decide`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::catalog::Kind;

/// What an account's policy says about one kind of call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Call without asking.
    Allow,
    /// Ask first (refused when there is no one to ask).
    Ask,
    /// Refuse.
    Deny,
}

impl Access {
    /// `allow`, `ask` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Allow => "allow",
            Access::Ask => "ask",
            Access::Deny => "deny",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Access {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "allow" => Ok(Access::Allow),
            "ask" => Ok(Access::Ask),
            "deny" => Ok(Access::Deny),
            other => Err(format!(
                "`{other}` is not a permission: use allow, ask or deny"
            )),
        }
    }
}

/// An account's policy for reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Calls that only read.
    pub read: Access,
    /// Calls that create or change data.
    pub write: Access,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            read: Access::Allow,
            write: Access::Ask,
        }
    }
}

impl Policy {
    /// The same policy with `ask` turned into `allow` (for the sandbox's throwaway accounts).
    pub fn without_asking(self) -> Policy {
        let lift = |a: Access| if a == Access::Ask { Access::Allow } else { a };
        Policy {
            read: lift(self.read),
            write: lift(self.write),
        }
    }

    /// The access for one kind of call.
    pub fn access(&self, kind: Kind) -> Access {
        match kind {
            Kind::Read => self.read,
            Kind::Write => self.write,
        }
    }
}

/// What to do with one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The policy allows it.
    Allow,
    /// The policy asks or denies, and `--force` lifts that.
    Bypass,
    /// Ask whoever is at the terminal.
    Ask,
    /// Refuse; `ask_refused` says it was an `ask` with no one to ask.
    Refuse {
        /// True when the policy was `ask` (no terminal), false for `deny`.
        ask_refused: bool,
    },
}

/// Decide a call from the policy, `--force`, and whether someone can be asked.
pub fn decide(access: Access, force: bool, can_ask: bool) -> Decision {
    match (access, force) {
        (Access::Allow, _) => Decision::Allow,
        (_, true) => Decision::Bypass,
        (Access::Ask, false) if can_ask => Decision::Ask,
        (Access::Ask, false) => Decision::Refuse { ask_refused: true },
        (Access::Deny, false) => Decision::Refuse { ask_refused: false },
    }
}

/// An answer to a permission question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// This call only.
    Yes,
    /// This kind of call on this account, for the rest of the run.
    All,
    /// Refuse.
    No,
}

/// Asks a person whether a call may go ahead.
pub trait Prompter: Send + Sync {
    /// Ask `question`; blocking.
    fn ask(&self, question: &str) -> Answer;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_decisions() {
        let p = Policy::default();
        assert_eq!(p.access(Kind::Read), Access::Allow);
        assert_eq!(p.access(Kind::Write), Access::Ask);
        assert_eq!(
            decide(Access::Ask, false, false),
            Decision::Refuse { ask_refused: true }
        );
        assert_eq!(decide(Access::Ask, false, true), Decision::Ask);
        assert_eq!(
            decide(Access::Deny, false, true),
            Decision::Refuse { ask_refused: false }
        );
        assert_eq!(decide(Access::Deny, true, false), Decision::Bypass);
        assert_eq!(decide(Access::Allow, true, false), Decision::Allow);
        assert_eq!("DENY".parse::<Access>(), Ok(Access::Deny));
        assert!("maybe".parse::<Access>().is_err());
    }

    /// Guards the words users type and read: `as_str`, `Display` and `FromStr` agree for every
    /// kind (a mutated `as_str` returning "" passed every test before this one).
    #[test]
    fn names_round_trip() {
        for (access, name) in [
            (Access::Allow, "allow"),
            (Access::Ask, "ask"),
            (Access::Deny, "deny"),
        ] {
            assert_eq!(access.as_str(), name);
            assert_eq!(access.to_string(), name);
            assert_eq!(name.parse::<Access>(), Ok(access));
            assert_eq!(
                format!(" {} ", name.to_uppercase()).parse::<Access>(),
                Ok(access)
            );
        }
        assert_eq!(
            "maybe".parse::<Access>(),
            Err("`maybe` is not a permission: use allow, ask or deny".to_string())
        );
    }

    /// The sandbox lifts `ask` and nothing else: a configured `deny` still denies there
    /// (fails if `without_asking` returns the default policy or lifts every kind).
    #[test]
    fn without_asking_lifts_ask_and_keeps_deny() {
        let p = Policy {
            read: Access::Ask,
            write: Access::Deny,
        };
        assert_eq!(
            p.without_asking(),
            Policy {
                read: Access::Allow,
                write: Access::Deny
            }
        );
        let q = Policy {
            read: Access::Deny,
            write: Access::Ask,
        };
        assert_eq!(
            q.without_asking(),
            Policy {
                read: Access::Deny,
                write: Access::Allow
            }
        );
        assert_eq!(
            Policy::default().without_asking(),
            Policy {
                read: Access::Allow,
                write: Access::Allow
            }
        );
    }
}
