//! Pod and container names from the kubelet's log directories, with no API access and
//! no RBAC: the kubelet makes `/var/log/pods/<namespace>_<pod>_<uid>/` for every pod and,
//! for every container it starts (whatever the runtime), a link
//! `/var/log/containers/<pod>_<namespace>_<container>-<container id>.log`. Only the
//! entries' names are read, never followed (the links point into the host's
//! `/var/log/pods`, which a DaemonSet may mount elsewhere), and each name must keep the
//! Kubernetes naming rules (DNS labels and subdomains, a UID), so whatever these
//! directories hold gives plain names or none.
//!
//! Listings are cached: a name is looked up in the last listing, and the directories are
//! listed again only when a lookup misses, at most every [`RELIST_EVERY`], and only for
//! a name missed for less than [`GIVE_UP_AFTER`] (the kubelet makes a container's link
//! just after the container starts, so a process seen at once may be named a moment
//! later; a pod's sandbox, which has no log, stops costing anything after that).

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// The kubelet's pod log directory (`--pod-log-dir`).
pub const DEFAULT_POD_LOG_DIR: &str = "/var/log/pods";
/// The kubelet's container log links (`--container-log-dir`).
pub const DEFAULT_CONTAINER_LOG_DIR: &str = "/var/log/containers";

/// Entries read per directory listing at most: a node runs at most a few hundred pods
/// (110 by default), each with a few containers and their restarts.
const MAX_ENTRIES: usize = 20_000;
/// Longer entry names are not the kubelet's (it keeps them to 255 bytes).
const MAX_NAME_BYTES: usize = 255;
/// Least time between two listings.
pub const RELIST_EVERY: Duration = Duration::from_secs(1);
/// A name still missing this long after its first miss is not looked for again.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
/// Missed names remembered at most (then forgotten all at once).
const MAX_MISSES: usize = 4096;

/// Where the kubelet's log directories are (on the host, or where a DaemonSet mounts
/// them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeletLogDirs {
    /// `<namespace>_<pod>_<uid>/` per pod.
    pub pods: PathBuf,
    /// `<pod>_<namespace>_<container>-<container id>.log` per container.
    pub containers: PathBuf,
}

impl Default for KubeletLogDirs {
    fn default() -> Self {
        Self {
            pods: PathBuf::from(DEFAULT_POD_LOG_DIR),
            containers: PathBuf::from(DEFAULT_CONTAINER_LOG_DIR),
        }
    }
}

/// A pod as its log directory names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNames {
    pub namespace: String,
    pub name: String,
}

/// A container as its log link names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerNames {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

/// What the last listing held.
#[derive(Default)]
struct Listing {
    /// Pods by UID.
    pods: HashMap<String, PodNames>,
    /// UIDs by (namespace, pod); `None` when two directories claim the name (a pod
    /// deleted and made again under its name, its old logs not yet removed).
    uids: HashMap<(String, String), Option<String>>,
    /// Containers by full id.
    containers: HashMap<String, ContainerNames>,
}

/// The kubelet's names, looked up in cached listings of its log directories.
pub struct KubeletLogs {
    dirs: KubeletLogDirs,
    listing: Listing,
    listed_at: Option<Instant>,
    /// When each name not found was first looked for.
    misses: HashMap<String, Instant>,
}

impl KubeletLogs {
    pub fn new(dirs: KubeletLogDirs) -> Self {
        Self {
            dirs,
            listing: Listing::default(),
            listed_at: None,
            misses: HashMap::new(),
        }
    }

    pub fn dirs(&self) -> &KubeletLogDirs {
        &self.dirs
    }

    /// The pod with this UID (as written in its log directory's name, with dashes).
    pub fn pod(&mut self, uid: &str, now: Instant) -> Option<PodNames> {
        self.lookup(uid, now, |l| l.pods.get(uid).cloned())
    }

    /// The container with this full id.
    pub fn container(&mut self, id: &str, now: Instant) -> Option<ContainerNames> {
        self.lookup(id, now, |l| l.containers.get(id).cloned())
    }

    /// The UID of the pod with this namespace and name, when one directory names it.
    pub fn uid_of(&mut self, namespace: &str, name: &str, now: Instant) -> Option<String> {
        let key = (namespace.to_string(), name.to_string());
        self.lookup(&format!("{namespace}_{name}"), now, |l| {
            l.uids.get(&key).cloned().flatten()
        })
    }

    /// Whether a lookup of `key` that misses now would list the directories again.
    pub fn would_relist(&self, key: &str, now: Instant) -> bool {
        let missed_long_ago = self
            .misses
            .get(key)
            .is_some_and(|first| now.saturating_duration_since(*first) >= GIVE_UP_AFTER);
        let listed_lately = self
            .listed_at
            .is_some_and(|at| now.saturating_duration_since(at) < RELIST_EVERY);
        !missed_long_ago && !listed_lately
    }

    fn lookup<T>(
        &mut self,
        key: &str,
        now: Instant,
        get: impl Fn(&Listing) -> Option<T>,
    ) -> Option<T> {
        if let Some(found) = get(&self.listing) {
            return Some(found);
        }
        let relist = self.would_relist(key, now);
        if !self.misses.contains_key(key) {
            if self.misses.len() >= MAX_MISSES {
                self.misses.clear();
            }
            self.misses.insert(key.to_string(), now);
        }
        if !relist {
            return None;
        }
        self.relist(now);
        let found = get(&self.listing);
        if found.is_some() {
            self.misses.remove(key);
        }
        found
    }

    fn relist(&mut self, now: Instant) {
        self.listing = Listing::of(
            entry_names(&self.dirs.pods),
            entry_names(&self.dirs.containers),
        );
        self.listed_at = Some(now);
    }

    /// Names looked up in listings given here rather than read from directories (as
    /// listed at `now`), for the fuzz targets: at most as many entries as a listing
    /// reads, each at most as long.
    #[cfg(feature = "fuzzing")]
    pub fn with_entries(pods: Vec<String>, containers: Vec<String>, now: Instant) -> Self {
        let bounded = |names: Vec<String>| bounded_names(names.into_iter().map(Some));
        let mut logs = Self::new(KubeletLogDirs {
            pods: PathBuf::from("/nonexistent/leakscope-fuzz/pods"),
            containers: PathBuf::from("/nonexistent/leakscope-fuzz/containers"),
        });
        logs.listing = Listing::of(bounded(pods), bounded(containers));
        logs.listed_at = Some(now);
        logs
    }
}

impl Listing {
    /// What the entries of the pod and container log directories name.
    fn of(pod_dirs: Vec<String>, container_links: Vec<String>) -> Self {
        let mut listing = Listing::default();
        for entry in pod_dirs {
            if let Some((names, uid)) = parse_pod_dir(&entry) {
                let key = (names.namespace.clone(), names.name.clone());
                listing
                    .uids
                    .entry(key)
                    .and_modify(|known| *known = None)
                    .or_insert_with(|| Some(uid.clone()));
                listing.pods.insert(uid, names);
            }
        }
        for entry in container_links {
            if let Some((names, id)) = parse_container_link(&entry) {
                listing.containers.insert(id, names);
            }
        }
        listing
    }
}

/// The names of a directory's entries: at most [`MAX_ENTRIES`], each at most
/// [`MAX_NAME_BYTES`] and UTF-8 (others are not the kubelet's); none when it cannot be
/// read (not a Kubernetes node, or not mounted).
fn entry_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    bounded_names(entries.map(|entry| entry.ok()?.file_name().into_string().ok()))
}

/// The first [`MAX_ENTRIES`] entries of a listing (`None`: one that cannot be read or is
/// not UTF-8), without those longer than [`MAX_NAME_BYTES`].
fn bounded_names(entries: impl Iterator<Item = Option<String>>) -> Vec<String> {
    entries
        .take(MAX_ENTRIES)
        .flatten()
        .filter(|name| name.len() <= MAX_NAME_BYTES)
        .collect()
}

/// `<namespace>_<pod>_<uid>` (a pod's log directory): its names and UID.
pub fn parse_pod_dir(name: &str) -> Option<(PodNames, String)> {
    let mut parts = name.split('_');
    let (namespace, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_dns_label(namespace) || !is_dns_subdomain(pod) {
        return None;
    }
    let uid = pod_uid(uid, '-')?;
    Some((
        PodNames {
            namespace: namespace.to_string(),
            name: pod.to_string(),
        },
        uid,
    ))
}

/// `<pod>_<namespace>_<container>-<64 hex digits>.log` (a container's log link): its
/// names and full id.
pub fn parse_container_link(name: &str) -> Option<(ContainerNames, String)> {
    let (names, id) = name.strip_suffix(".log")?.rsplit_once('-')?;
    if !is_container_id(id) {
        return None;
    }
    let mut parts = names.split('_');
    let (pod, namespace, container) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || !is_dns_subdomain(pod)
        || !is_dns_label(namespace)
        || !is_dns_label(container)
    {
        return None;
    }
    Some((
        ContainerNames {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            container: container.to_string(),
        },
        id.to_string(),
    ))
}

/// A pod UID written with `separator` between its groups (`-`, or `_` in systemd slice
/// names), with dashes: a UUID (8-4-4-4-12 lowercase hex digits), or 32 hex digits (a
/// static pod's, the hash of its manifest).
pub fn pod_uid(text: &str, separator: char) -> Option<String> {
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if text.len() == 32 && hex(text) {
        return Some(text.to_string());
    }
    let groups: Vec<&str> = text.splitn(6, separator).collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    (lengths == [8, 4, 4, 4, 12] && groups.iter().all(|g| hex(g))).then(|| groups.join("-"))
}

/// A container id as the runtimes write it: 64 lowercase hex digits.
pub fn is_container_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// An RFC 1123 label (namespaces, container names): 1-63 of `a-z`, `0-9`, `-`,
/// starting and ending alphanumeric.
pub fn is_dns_label(text: &str) -> bool {
    text.len() <= 63 && is_dns_name(text, false)
}

/// An RFC 1123 subdomain (pod names): up to 253 of `a-z`, `0-9`, `-`, `.`, starting and
/// ending alphanumeric.
pub fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && is_dns_name(text, true)
}

fn is_dns_name(text: &str, dots: bool) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = text.as_bytes();
    bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes
            .iter()
            .all(|b| alnum(b) || *b == b'-' || (dots && *b == b'.'))
}

/// Kubelet log directories made up by unit tests.
#[cfg(test)]
pub mod fake {
    use std::{fs, path::PathBuf};

    use super::KubeletLogDirs;

    /// A scratch directory shaped like the kubelet's two log directories.
    pub struct FakeLogs(pub PathBuf);

    impl FakeLogs {
        pub fn new(name: &str) -> Self {
            let root =
                std::env::temp_dir().join(format!("leakscope-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(root.join("pods")).unwrap();
            fs::create_dir_all(root.join("containers")).unwrap();
            FakeLogs(root)
        }

        pub fn dirs(&self) -> KubeletLogDirs {
            KubeletLogDirs {
                pods: self.0.join("pods"),
                containers: self.0.join("containers"),
            }
        }

        pub fn pod(&self, dir: &str) {
            fs::create_dir_all(self.0.join("pods").join(dir)).unwrap();
        }

        pub fn link(&self, name: &str) {
            std::os::unix::fs::symlink(
                "/var/log/pods/x/0.log",
                self.0.join("containers").join(name),
            )
            .unwrap();
        }
    }

    impl Drop for FakeLogs {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{fake::FakeLogs, *};

    const UID: &str = "6f1c1f3e-2a4b-4c5d-9e8f-0a1b2c3d4e5f";

    fn id(fill: char) -> String {
        std::iter::repeat_n(fill, 64).collect()
    }

    /// Check that pod directory and container link names give their names, UID and id,
    /// and that names breaking the Kubernetes rules (upper case, an extra `_`, a short
    /// id, odd bytes, too long) give nothing.
    #[test]
    fn log_entry_names_are_parsed_and_checked() {
        let (pod, uid) = parse_pod_dir(&format!("shop_checkout-7d9f8b6c4-x2x9z_{UID}")).unwrap();
        assert_eq!(
            (pod.namespace.as_str(), pod.name.as_str()),
            ("shop", "checkout-7d9f8b6c4-x2x9z")
        );
        assert_eq!(uid, UID);
        let static_uid = "0123456789abcdef0123456789abcdef";
        let (pod, uid) =
            parse_pod_dir(&format!("kube-system_etcd-node-1.example_{static_uid}")).unwrap();
        assert_eq!(
            (pod.name.as_str(), uid.as_str()),
            ("etcd-node-1.example", static_uid)
        );
        let link = format!("checkout-7d9f8b6c4-x2x9z_shop_api-server-{}.log", id('a'));
        let (names, full) = parse_container_link(&link).unwrap();
        assert_eq!(
            names,
            ContainerNames {
                namespace: "shop".into(),
                pod: "checkout-7d9f8b6c4-x2x9z".into(),
                container: "api-server".into()
            }
        );
        assert_eq!(full, id('a'));
        for bad in [
            format!("Shop_checkout_{UID}"),
            format!("shop_check_out_{UID}"),
            format!("shop_checkout_{}", &UID[1..]),
            format!("shop_checkout_{}", UID.to_uppercase()),
            format!("shop_-checkout_{UID}"),
            format!("shop_checkout\u{1b}[31m_{UID}"),
            format!("{}_checkout_{UID}", "n".repeat(64)),
            "shop_checkout".to_string(),
        ] {
            assert_eq!(parse_pod_dir(&bad), None, "{bad:?}");
        }
        for bad in [
            format!("checkout_shop_api-{}.log", &id('a')[1..]),
            format!("checkout_shop_api-{}.log", id('A')),
            format!("checkout_shop_api_x-{}.log", id('a')),
            format!("checkout_shop_Api-{}.log", id('a')),
            format!("checkout_shop_api-{}", id('a')),
            format!("checkout_shop_{}-{}.log", "c".repeat(64), id('a')),
        ] {
            assert_eq!(parse_container_link(&bad), None, "{bad:?}");
        }
        assert_eq!(pod_uid(&UID.replace('-', "_"), '_').as_deref(), Some(UID));
        assert_eq!(pod_uid(UID, '_'), None);
        assert_eq!(pod_uid("", '-'), None);
    }

    /// Check that names are found in the directories, that a link made after the first
    /// miss is found once the listing may be renewed, that a name missed for long is no
    /// more looked for (no listing), and that two directories claiming one pod name give
    /// no UID for it.
    #[test]
    fn names_are_looked_up_in_cached_listings() {
        let fake = FakeLogs::new("kubelet-names");
        fake.pod(&format!("shop_checkout-1_{UID}"));
        fake.link(&format!("checkout-1_shop_api-{}.log", id('a')));
        fake.pod("shop_web-0_11111111-2222-3333-4444-555555555555");
        fake.pod("shop_web-0_11111111-2222-3333-4444-666666666666");
        fs::write(fake.0.join("pods").join("junk\u{7f}"), "").unwrap();
        let mut logs = KubeletLogs::new(fake.dirs());
        let t0 = Instant::now();
        assert_eq!(
            logs.pod(UID, t0),
            Some(PodNames {
                namespace: "shop".into(),
                name: "checkout-1".into()
            })
        );
        assert_eq!(logs.container(&id('a'), t0).unwrap().container, "api");
        assert_eq!(logs.uid_of("shop", "checkout-1", t0).as_deref(), Some(UID));
        assert_eq!(logs.uid_of("shop", "web-0", t0), None, "ambiguous");

        // The sidecar's link appears after its process was first looked up.
        assert_eq!(logs.container(&id('b'), t0), None);
        fake.link(&format!("checkout-1_shop_sidecar-{}.log", id('b')));
        assert_eq!(logs.container(&id('b'), t0), None, "listed moments ago");
        let later = t0 + RELIST_EVERY;
        assert_eq!(
            logs.container(&id('b'), later).unwrap().container,
            "sidecar"
        );

        // A sandbox: never named; after GIVE_UP_AFTER no more listings for it.
        assert_eq!(logs.container(&id('c'), later), None);
        let much_later = later + GIVE_UP_AFTER;
        assert!(!logs.would_relist(&id('c'), much_later));
        assert!(
            logs.would_relist(&id('d'), much_later),
            "a new name may list again"
        );
    }

    /// Check that missing directories (not a Kubernetes node) give no names and no error.
    #[test]
    fn missing_directories_name_nothing() {
        let mut logs = KubeletLogs::new(KubeletLogDirs {
            pods: PathBuf::from("/nonexistent/leakscope/pods"),
            containers: PathBuf::from("/nonexistent/leakscope/containers"),
        });
        assert_eq!(logs.pod(UID, Instant::now()), None);
        assert_eq!(logs.container(&id('a'), Instant::now()), None);
    }
}
