//! `sup startup` / `sup unstartup`: a systemd unit that runs the daemon at
//! boot (it resurrects the saved apps), as a system unit for a user or as a
//! user unit.

use crate::args::StartupArgs;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use sup_home::Home;

/// Init systems `sup startup` supports.
const SUPPORTED: &[&str] = &["systemd"];

/// Who the unit runs for, and where.
struct Target {
    user: String,
    home: PathBuf,
    sup_home: PathBuf,
    user_unit: bool,
}

impl Target {
    fn unit_name(&self) -> String {
        if self.user_unit {
            "sup.service".into()
        } else {
            format!("sup-{}.service", self.user)
        }
    }

    fn unit_path(&self) -> PathBuf {
        if self.user_unit {
            self.home
                .join(".config/systemd/user")
                .join(self.unit_name())
        } else {
            Path::new("/etc/systemd/system").join(self.unit_name())
        }
    }

    fn systemctl(&self, args: &[&str]) -> Result<()> {
        let mut cmd = Command::new("systemctl");
        if self.user_unit {
            cmd.arg("--user");
        }
        let status = cmd.args(args).status().context("cannot run systemctl")?;
        if !status.success() {
            bail!("`systemctl {}` failed ({status})", args.join(" "));
        }
        Ok(())
    }
}

/// The unit's text.
fn unit(target: &Target, sup: &Path, path_var: &str) -> String {
    let user_line = if target.user_unit {
        String::new()
    } else {
        format!("User={}\n", target.user)
    };
    // A user manager has no network-online.target: ordering on it there
    // only draws a warning, so the network lines are for system units.
    let (wanted_by, network) = if target.user_unit {
        ("default.target", "")
    } else {
        (
            "multi-user.target",
            "After=network-online.target\nWants=network-online.target\n",
        )
    };
    let sup = sup.display();
    format!(
        "[Unit]\n\
         Description=sup process supervisor ({user})\n\
         {network}\
         \n\
         [Service]\n\
         Type=notify\n\
         NotifyAccess=main\n\
         {user_line}\
         Environment=\"SUP_HOME={sup_home}\"\n\
         Environment=\"PATH={path_var}\"\n\
         ExecStart={sup} daemon --resurrect\n\
         ExecStop={sup} kill\n\
         KillMode=mixed\n\
         Delegate=yes\n\
         TimeoutStopSec=60\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         RestartPreventExitStatus={busy}\n\
         LimitNOFILE=524288\n\
         \n\
         [Install]\n\
         WantedBy={wanted_by}\n",
        user = target.user,
        sup_home = target.sup_home.display(),
        busy = sup_home::EXIT_ALREADY_RUNNING,
    )
}

/// The PATH the unit gets: the caller's `path` (so node, python and
/// friends are found as in their shell), then the usual system directories;
/// each directory once, where it first appears.
fn unit_path_var(path: &str) -> String {
    const SYSTEM: [&str; 6] = [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ];
    let mut dirs: Vec<&str> = Vec::new();
    let usable = path
        .split(':')
        .filter(|d| d.starts_with('/') && !d.contains(['"', '\\', '%', '$']));
    for d in usable.chain(SYSTEM) {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs.join(":")
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn target(args: &StartupArgs, home: &Home) -> Result<Target> {
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())?
        .context("cannot find the current user")?;
    let (user, pw_home) = match &args.username {
        Some(name) => {
            let u = nix::unistd::User::from_name(name)?
                .with_context(|| format!("no user named {name:?}"))?;
            (u.name, u.dir)
        }
        None => (me.name, me.dir),
    };
    let user_home = args.hp.clone().map(PathBuf::from).unwrap_or(pw_home);
    // SUP_HOME set by the caller wins; for another user, theirs by default.
    let sup_home = match (std::env::var_os("SUP_HOME"), &args.username) {
        (Some(h), _) if !h.is_empty() => home.dir().to_path_buf(),
        (_, Some(_)) => user_home.join(".local/share/sup"),
        _ => home.dir().to_path_buf(),
    };
    Ok(Target {
        user,
        home: user_home,
        sup_home,
        user_unit: args.user,
    })
}

fn check_init(args: &StartupArgs) -> Result<()> {
    if let Some(init) = &args.init {
        if !SUPPORTED.contains(&init.as_str()) {
            bail!(
                "unsupported init system {init:?}; supported: {}",
                SUPPORTED.join(", ")
            );
        }
    }
    Ok(())
}

fn check_systemd() -> Result<()> {
    if !Path::new("/run/systemd/system").exists() {
        bail!(
            "systemd is not running as init here (no /run/systemd/system), so there is nothing to install into; \
             `sup startup --print` prints the unit, and a container can run `sup daemon --resurrect` as its entrypoint"
        );
    }
    Ok(())
}

/// The command a user without root runs to install the unit.
fn sudo_command(target: &Target, sup: &Path, verb: &str) -> String {
    format!(
        "sudo env PATH=\"$PATH\" SUP_HOME=\"{}\" {} {verb} systemd -u {} --hp \"{}\"",
        target.sup_home.display(),
        sup.display(),
        target.user,
        target.home.display()
    )
}

/// `sup startup`.
pub fn startup(args: &StartupArgs, home: &Home) -> Result<()> {
    check_init(args)?;
    let sup = std::env::current_exe().context("cannot find the sup executable")?;
    let target = target(args, home)?;
    let path_var = unit_path_var(&std::env::var("PATH").unwrap_or_default());
    let text = unit(&target, &sup, &path_var);
    if args.print {
        print!("{text}");
        return Ok(());
    }
    check_systemd()?;
    if !target.user_unit && !is_root() {
        bail!(
            "installing a system unit needs root; run:\n  {}\nor install a user unit with `sup startup --user`",
            sudo_command(&target, &sup, "startup")
        );
    }
    let path = target.unit_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, &text).with_context(|| {
        format!(
            "cannot write {}; run as root ({}) or use --user",
            path.display(),
            sudo_command(&target, &sup, "startup")
        )
    })?;
    target.systemctl(&["daemon-reload"])?;
    target.systemctl(&["enable", &target.unit_name()])?;
    println!("[sup] installed and enabled {}", path.display());
    let on_demand = Home::at(target.sup_home.clone()).socket();
    if std::os::unix::net::UnixStream::connect(&on_demand).is_ok() {
        println!(
            "[sup] a daemon already runs on {}; the unit takes over at boot. To switch now:\n  sup save && sup kill && {}systemctl {}start {}",
            target.sup_home.display(),
            if target.user_unit { "" } else { "sudo " },
            if target.user_unit { "--user " } else { "" },
            target.unit_name()
        );
    } else {
        target.systemctl(&["start", &target.unit_name()])?;
        println!("[sup] started {}", target.unit_name());
    }
    if target.user_unit
        && !Path::new("/var/lib/systemd/linger")
            .join(&target.user)
            .exists()
    {
        println!(
            "[sup] user units start at login; for boot, run: sudo loginctl enable-linger {}",
            target.user
        );
    }
    println!("[sup] run `sup save` to freeze the app list the unit brings back at boot");
    Ok(())
}

/// `sup unstartup`.
pub fn unstartup(args: &StartupArgs, home: &Home) -> Result<()> {
    check_init(args)?;
    check_systemd()?;
    let sup = std::env::current_exe().context("cannot find the sup executable")?;
    let target = target(args, home)?;
    let path = target.unit_path();
    if !path.exists() {
        bail!("there is no {} to remove", path.display());
    }
    if !target.user_unit && !is_root() {
        bail!(
            "removing a system unit needs root; run:\n  {}",
            sudo_command(&target, &sup, "unstartup")
        );
    }
    target.systemctl(&["disable", &target.unit_name()])?;
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    target.systemctl(&["daemon-reload"])?;
    // No unit will bring a dead daemon back now: the CLI starts its own.
    let _ = Home::at(target.sup_home.clone()).forget_unit();
    println!(
        "[sup] disabled and removed {}; the running daemon, if any, keeps running",
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_unit_text() {
        let target = Target {
            user: "alice".into(),
            home: "/home/alice".into(),
            sup_home: "/home/alice/.local/share/sup".into(),
            user_unit: false,
        };
        let text = unit(&target, Path::new("/usr/local/bin/sup"), "/usr/bin:/bin");
        for line in [
            "Type=notify",
            "User=alice",
            "Environment=\"SUP_HOME=/home/alice/.local/share/sup\"",
            "ExecStart=/usr/local/bin/sup daemon --resurrect",
            "KillMode=mixed",
            "Delegate=yes",
            "After=network-online.target",
            "WantedBy=multi-user.target",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_eq!(
            target.unit_path(),
            Path::new("/etc/systemd/system/sup-alice.service")
        );
    }

    #[test]
    fn user_unit_has_no_user_line() {
        let target = Target {
            user: "bob".into(),
            home: "/home/bob".into(),
            sup_home: "/home/bob/.local/share/sup".into(),
            user_unit: true,
        };
        let text = unit(&target, Path::new("/bin/sup"), "/bin");
        assert!(!text.contains("User="));
        // The user manager has no network-online.target.
        assert!(!text.contains("network-online"), "{text}");
        assert!(text.contains("WantedBy=default.target"));
        assert_eq!(
            target.unit_path(),
            Path::new("/home/bob/.config/systemd/user/sup.service")
        );
    }

    #[test]
    fn path_keeps_each_directory_once_in_first_order() {
        let path = unit_path_var("/opt/node/bin:/usr/bin:/opt/node/bin:relative:/bin:/usr/bin");
        assert_eq!(
            path,
            "/opt/node/bin:/usr/bin:/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin"
        );
    }
}
