//! Running an app as another user (`--user`, PM2's `user`/`uid`/`gid`):
//! everything is looked up before the fork (the passwd and group files are
//! no place for a forked child of a threaded process), and the child only
//! makes the `setgroups`/`setgid`/`setuid` system calls.

use nix::unistd::{getgrouplist, Gid, Group, Uid, User};
use std::ffi::CString;
use sup_proto::AppSpec;

/// Who an app runs as, when that is not the daemon's own user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Every group the user is in (`initgroups`), looked up now.
    pub groups: Vec<libc::gid_t>,
    /// The user's name, for `USER` and `LOGNAME`.
    pub name: String,
    /// The user's home directory, for `HOME`.
    pub home: String,
}

/// Who `spec` runs as: None for the daemon's own user (nothing to
/// switch); an error for an unknown user or group, or when the daemon is
/// not root and so cannot switch.
pub fn resolve(spec: &AppSpec) -> Result<Option<Creds>, String> {
    if spec.user.is_none() && spec.group.is_none() {
        return Ok(None);
    }
    // NSS may be LDAP or sssd: a lookup per spawn would be a network round
    // trip on the event loop in a crash loop. A minute-old answer will do.
    let key = (spec.user.clone(), spec.group.clone());
    let now = std::time::Instant::now();
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    cache.retain(|_, (at, _)| now.duration_since(*at) < CACHE_FOR);
    if let Some((_, found)) = cache.get(&key) {
        return found.clone().and_then(|creds| check_notify(spec, creds));
    }
    let found = match look_up(spec) {
        Ok(found) => Ok(found),
        Err(Lookup::Answer(no)) => Err(no),
        // NSS could not answer (LDAP down): ask again next time.
        Err(Lookup::Failed(why)) => return Err(why),
    };
    cache.insert(key, (now, found.clone()));
    found.and_then(|creds| check_notify(spec, creds))
}

/// How long a looked-up user stays good.
const CACHE_FOR: std::time::Duration = std::time::Duration::from_secs(60);

type Lookups = std::collections::BTreeMap<
    (Option<String>, Option<String>),
    (std::time::Instant, Result<Option<Creds>, String>),
>;

static CACHE: std::sync::Mutex<Lookups> = std::sync::Mutex::new(std::collections::BTreeMap::new());

/// sd_notify readiness cannot reach sup's private home as another user.
fn check_notify(spec: &AppSpec, creds: Option<Creds>) -> Result<Option<Creds>, String> {
    match &creds {
        Some(c) if spec.health.readiness == Some(sup_proto::Probe::Notify) => Err(format!(
            "{} cannot report readiness by sd_notify as user {}: the notify socket is in sup's private home; \
             use an HTTP, TCP or command readiness probe",
            spec.name, c.name
        )),
        _ => Ok(creds),
    }
}

/// Why a lookup gave no credentials.
enum Lookup {
    /// A definite answer (no such user, not root): kept a while.
    Answer(String),
    /// NSS failed to answer: not kept.
    Failed(String),
}

impl From<String> for Lookup {
    fn from(no: String) -> Lookup {
        Lookup::Answer(no)
    }
}

impl From<&str> for Lookup {
    fn from(no: &str) -> Lookup {
        Lookup::Answer(no.to_string())
    }
}

/// The passwd and group lookups behind [`resolve`].
fn look_up(spec: &AppSpec) -> Result<Option<Creds>, Lookup> {
    let user = match spec.user.as_deref() {
        Some(who) => find_user(who)?,
        None => User::from_uid(Uid::effective())
            .map_err(|e| Lookup::Failed(format!("cannot look up the daemon's own user: {e}")))?
            .ok_or("the daemon's own user has no passwd entry")?,
    };
    let gid = match spec.group.as_deref() {
        Some(group) => find_group(group)?,
        None => user.gid,
    };
    if user.uid == Uid::effective() && gid == Gid::effective() {
        return Ok(None);
    }
    if !Uid::effective().is_root() {
        return Err(format!(
            "cannot run {} as user {}: the daemon runs as uid {}, and only a daemon running as root switches users",
            spec.name,
            user.name,
            Uid::effective()
        )
        .into());
    }
    let name = CString::new(user.name.as_str()).map_err(|_| "a NUL in the user name")?;
    let groups = getgrouplist(&name, gid)
        .map_err(|e| Lookup::Failed(format!("cannot list the groups of {}: {e}", user.name)))?
        .into_iter()
        .map(Gid::as_raw)
        .collect();
    Ok(Some(Creds {
        uid: user.uid.as_raw(),
        gid: gid.as_raw(),
        groups,
        name: user.name,
        home: user.dir.display().to_string(),
    }))
}

/// The uid and gid the app's log files belong to: its user's, when it runs
/// as another user (None: the daemon's).
pub fn log_owner(spec: &AppSpec) -> Option<(u32, u32)> {
    resolve(spec).ok().flatten().map(|c| (c.uid, c.gid))
}

/// A user by name, or by number when no user has that name.
fn find_user(who: &str) -> Result<User, Lookup> {
    let failed = |e| Lookup::Failed(format!("cannot look up user {who:?}: {e}"));
    if let Some(user) = not_found_is_none(User::from_name(who)).map_err(failed)? {
        return Ok(user);
    }
    let by_uid = match who.parse::<u32>() {
        Ok(uid) => not_found_is_none(User::from_uid(Uid::from_raw(uid))).map_err(failed)?,
        Err(_) => None,
    };
    by_uid.ok_or_else(|| Lookup::Answer(format!("no user {who:?} on this system")))
}

/// A group id by name or number.
fn find_group(group: &str) -> Result<Gid, Lookup> {
    let found = not_found_is_none(Group::from_name(group))
        .map_err(|e| Lookup::Failed(format!("cannot look up group {group:?}: {e}")))?;
    if let Some(g) = found {
        return Ok(g.gid);
    }
    group
        .parse::<u32>()
        .map(Gid::from_raw)
        .map_err(|_| Lookup::Answer(format!("no group {group:?} on this system")))
}

/// Who `spec` runs as ([`resolve`]), with `env` made to match.
pub fn for_app(spec: &AppSpec, env: &mut Vec<(String, String)>) -> Result<Option<Creds>, String> {
    let creds = resolve(spec)?;
    if let Some(c) = &creds {
        add_env(env, c, spec);
    }
    Ok(creds)
}

/// Sets `HOME`, `USER` and `LOGNAME` from the user's passwd entry, unless
/// the spec declares them.
fn add_env(env: &mut Vec<(String, String)>, creds: &Creds, spec: &AppSpec) {
    for (key, value) in [
        ("HOME", &creds.home),
        ("USER", &creds.name),
        ("LOGNAME", &creds.name),
    ] {
        if !spec.env.contains_key(key) {
            env.retain(|(k, _)| k != key);
            env.push((key.into(), value.clone()));
        }
    }
}

/// getpwnam_r(3): some NSS modules say "not found" with ENOENT, ESRCH,
/// EBADF or EPERM instead of a null result; only other errors are
/// failures to answer.
fn not_found_is_none<T>(found: nix::Result<Option<T>>) -> nix::Result<Option<T>> {
    use nix::errno::Errno;
    match found {
        Err(Errno::ENOENT | Errno::ESRCH | Errno::EBADF | Errno::EPERM) => Ok(None),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(user: Option<&str>, group: Option<&str>) -> AppSpec {
        AppSpec {
            name: "a".into(),
            user: user.map(Into::into),
            group: group.map(Into::into),
            ..AppSpec::default()
        }
    }

    #[test]
    fn the_daemons_own_user_switches_nothing() {
        assert_eq!(resolve(&spec(None, None)), Ok(None));
        let me = User::from_uid(Uid::effective()).unwrap().unwrap();
        assert_eq!(resolve(&spec(Some(&me.name), None)), Ok(None));
        let uid = Uid::effective().to_string();
        assert_eq!(resolve(&spec(Some(&uid), None)), Ok(None));
    }

    #[test]
    fn unknown_users_and_groups_are_errors() {
        let err = resolve(&spec(Some("no-such-user-sup"), None)).unwrap_err();
        assert!(err.contains("no-such-user-sup"), "{err}");
        let err = resolve(&spec(None, Some("no-such-group-sup"))).unwrap_err();
        assert!(err.contains("no-such-group-sup"), "{err}");
    }

    #[test]
    fn another_user_needs_root() {
        let got = resolve(&spec(Some("nobody"), None));
        if Uid::effective().is_root() {
            let creds = got.unwrap().expect("nobody is another user");
            assert_eq!(creds.name, "nobody");
            assert_ne!(creds.uid, 0);
            assert!(creds.groups.contains(&creds.gid));
        } else {
            assert!(got.unwrap_err().contains("root"));
        }
    }

    #[test]
    fn declared_variables_win_over_the_passwd_entry() {
        let creds = Creds {
            uid: 65534,
            gid: 65534,
            groups: vec![65534],
            name: "nobody".into(),
            home: "/nonexistent".into(),
        };
        let mut s = spec(Some("nobody"), None);
        s.env.insert("HOME".into(), "/srv/app".into());
        let mut env = vec![("HOME".to_string(), "/srv/app".to_string())];
        add_env(&mut env, &creds, &s);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("USER"), Some("nobody"));
        assert_eq!(get("LOGNAME"), Some("nobody"));
        assert_eq!(get("HOME"), Some("/srv/app"), "the declared HOME stays");
    }
}
