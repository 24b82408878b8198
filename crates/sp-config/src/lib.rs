//! Floor 3, pure: the guide's own configuration files (read from where the guide
//! writes them), the topology of the cloud, and their validation — everything decided
//! before any change is made.

pub mod desired;
pub mod guide;
mod ini;
pub mod topology;
mod validate;

pub use guide::GuideConfig;
pub use ini::{ConfigError, Ini};
pub use topology::Topology;
pub use validate::validate;
