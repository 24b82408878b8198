//! Floor 4: loop-file-backed LVM volume groups — the Cinder backing store of the guides
//! (`/var/lib/cinder/cinder-volumes` on a loop device), done natively: loop devices
//! through ioctls ([`sp_kernel::loopdev`]) and the LVM2 on-disk format through our own
//! writer ([`sp_lvm`]). No lvm2 tool and no losetup is ever run.
//!
//! Safety rules kept by every operation: LVM's own locks (`/run/lock/lvm/P_global`,
//! `V_<vg>`) are held while writing; new metadata goes into every area before any header
//! changes, synced, and the header write is the commit point; a failure before the first
//! commit undoes the run's own steps (new files deleted, loop devices unbound, grown files
//! shrunk back).

pub mod columns;
pub mod error;
pub mod io;
pub mod lock;
pub mod ondisk;
mod ops;
mod pending;
mod report;
pub mod unit;

pub use error::{Error, Result};
pub use ops::{Loopvg, Removed, DEFAULT_DIR};
pub use report::{PvReport, VgReport};
/// Sizes as lvm2 and loopvg read them (`20G`, `+5G`), from the format floor.
pub use sp_lvm::size;
