//! The native file dialog (rfd), and whether one can open at all.
//!
//! On Linux rfd asks the desktop portal's FileChooser over D-Bus and falls
//! back to zenity; where neither exists it returns nothing at once, exactly as
//! when the person cancels. So the studio asks first: zenity on the `PATH`, or
//! a portal answering for its FileChooser, else the dialog is unavailable.

use std::path::Path;
use std::sync::Arc;

use super::{FileRequest, Mode, NativeDialog, NativeOutcome};

/// rfd's dialog, after checking that one can open; blocks its (own) thread until answered.
pub fn system_dialog() -> NativeDialog {
    Arc::new(|request: &FileRequest, start: &Path| {
        if let Err(why) = native_available() {
            return NativeOutcome::Unavailable(why);
        }
        let mut dialog = rfd::FileDialog::new().set_title(request.title).set_directory(start);
        if request.mode != Mode::Folder {
            dialog = dialog.add_filter(request.filter.name, request.filter.extensions);
        }
        if let Some(name) = &request.file_name {
            dialog = dialog.set_file_name(name);
        }
        let picked = match request.mode {
            Mode::Open => dialog.pick_file(),
            Mode::Save => dialog.save_file(),
            Mode::Folder => dialog.pick_folder(),
        };
        picked.map_or(NativeOutcome::Cancelled, NativeOutcome::Picked)
    })
}

/// Whether rfd can show a dialog here; the error says why not.
#[cfg(target_os = "linux")]
fn native_available() -> Result<(), String> {
    if zenity_on(std::env::var_os("PATH").as_deref()) {
        return Ok(());
    }
    portal_file_chooser(None).map(|_| ()).map_err(|e| format!("no desktop portal offers a file chooser ({e}) and zenity is not installed"))
}

#[cfg(not(target_os = "linux"))]
fn native_available() -> Result<(), String> {
    Ok(())
}

/// Whether an executable `zenity` lies on `path` (a `PATH`-style list).
#[cfg(target_os = "linux")]
fn zenity_on(path: Option<&std::ffi::OsStr>) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = path else { return false };
    std::env::split_paths(path).any(|dir| std::fs::metadata(dir.join("zenity")).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The version of the portal's FileChooser interface on the session bus (or
/// the bus at `address`); an error when no bus, no portal or no file chooser answers.
#[cfg(target_os = "linux")]
fn portal_file_chooser(address: Option<&str>) -> Result<u32, String> {
    pollster::block_on(async {
        let connection = match address {
            Some(address) => zbus::connection::Builder::address(address)?.build().await?,
            None => zbus::Connection::session().await?,
        };
        let proxy = zbus::Proxy::new(&connection, "org.freedesktop.portal.Desktop", "/org/freedesktop/portal/desktop", "org.freedesktop.portal.FileChooser").await?;
        proxy.get_property::<u32>("version").await
    })
    .map_err(|e: zbus::Error| e.to_string())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn zenity_counts_only_as_an_executable_on_the_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("codiff-zenity-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let zenity = dir.join("zenity");
        std::fs::write(&zenity, "#!/bin/sh\n").unwrap();
        let path = std::env::join_paths(["/nonexistent", dir.to_str().unwrap()]).unwrap();
        std::fs::set_permissions(&zenity, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!zenity_on(Some(&path)), "a zenity that cannot run is no dialog");
        std::fs::set_permissions(&zenity, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(zenity_on(Some(&path)));
        assert!(!zenity_on(Some(std::ffi::OsStr::new("/nonexistent"))));
        assert!(!zenity_on(None));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_bus_is_an_error_not_a_hang() {
        let started = std::time::Instant::now();
        let error = portal_file_chooser(Some("unix:path=/nonexistent/codiff-test-bus")).unwrap_err();
        assert!(!error.is_empty());
        assert!(started.elapsed().as_secs() < 5, "took {:?}", started.elapsed());
    }
}
