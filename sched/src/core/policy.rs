//! The scheduling policies a configuration can name.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The project's own policy (see `policy_default.rs` for why it wins).
    Default,
    /// A replica of Dragonfly v2's scheduler and client defaults.
    Dragonfly,
    /// A replica of Kraken's tracker handout and agent behaviour.
    Kraken,
}

impl Policy {
    pub const ALL: [Policy; 3] = [Policy::Default, Policy::Dragonfly, Policy::Kraken];
    pub const NAMES: [&'static str; 3] = ["default", "dragonfly", "kraken"];

    pub fn name(self) -> &'static str {
        match self {
            Policy::Default => "default",
            Policy::Dragonfly => "dragonfly",
            Policy::Kraken => "kraken",
        }
    }

    /// Parses a policy name; `None` for anything else (callers name the valid ones).
    pub fn parse(name: &str) -> Option<Policy> {
        Policy::ALL.into_iter().find(|p| p.name() == name)
    }
}
