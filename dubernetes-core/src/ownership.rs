//! Who owns a container: what protects running work from a server that came
//! up on the wrong state.
//!
//! Every store has a random id. Every container a server creates carries it
//! ([`LABEL_STORE`]), next to the instance, together with the data dir the
//! store lived in ([`LABEL_DATA_DIR`]). Docker labels cannot be changed on a
//! container that exists, and replacing running work to relabel it is what
//! this module prevents, so a container the store *takes over* (one of an
//! older version without the label, or a foreign one with `--adopt-foreign`)
//! is recorded in the store's `adopted_containers` table instead. A server
//! owns a container when its store label is the store's id **or** its id is
//! in that table; it never stops, removes, or routes to any other.
//!
//! [`decide`] is the pure decision made at start, before the controller runs;
//! [`Ownership`] is the same rule applied to every container list the
//! controller makes afterwards (defence in depth: a foreign container that
//! appears later is never touched, only reported).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex as StdMutex;

use crate::error::Error;
use crate::labels::{LABEL_DATA_DIR, LABEL_POD, LABEL_ROLE, LABEL_STORE, ROLE_NAMES};

/// One container of the instance as the start-up check sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen<'a> {
    pub id: &'a str,
    pub labels: &'a HashMap<String, String>,
}

impl Seen<'_> {
    fn store(&self) -> Option<&str> {
        self.labels.get(LABEL_STORE).map(String::as_str)
    }
    fn role(&self) -> &str {
        self.labels.get(LABEL_ROLE).map_or("", String::as_str)
    }
    fn pod(&self) -> Option<&str> {
        self.labels.get(LABEL_POD).map(String::as_str)
    }
}

/// What the store knows, for the decision.
#[derive(Debug)]
pub(crate) struct Facts<'a> {
    /// This store's id.
    pub store_id: &'a str,
    /// The store was written by a version without store ids (it has pods but
    /// no id yet): the unlabelled containers of its own pods, and an
    /// unlabelled ingress, are its own and are adopted.
    pub upgraded: bool,
    /// The pods in the store.
    pub pods: &'a HashSet<String>,
    /// Containers the store adopted earlier.
    pub adopted: &'a HashSet<String>,
}

/// What to do with one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Ours already (our label, or adopted earlier).
    Own,
    /// Take it over: record it as adopted. `held`: its pod is not in this
    /// store, so it is left alone (never stopped, removed or routed) until a
    /// pod of that name is applied; then it counts as one of its replicas.
    Adopt { held: bool },
    /// Another store's (or unlabelled, with no reason to think it is ours).
    Foreign,
}

/// The rule for one container.
pub(crate) fn classify(c: Seen<'_>, facts: &Facts<'_>, adopt_foreign: bool) -> Verdict {
    if c.store() == Some(facts.store_id) || facts.adopted.contains(c.id) {
        return Verdict::Own;
    }
    let of_our_pod = match c.role() {
        // The instance's own helpers, whatever its pods.
        "ingress" | ROLE_NAMES => true,
        "replica" => c.pod().is_some_and(|p| facts.pods.contains(p)),
        _ => false,
    };
    if c.store().is_none() && facts.upgraded && of_our_pod {
        return Verdict::Adopt { held: false };
    }
    if adopt_foreign {
        return Verdict::Adopt { held: !of_our_pod };
    }
    Verdict::Foreign
}

/// A container to record as adopted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Adoption {
    pub id: String,
    pub pod: Option<String>,
    /// The store label it carried (None: unlabelled, from an older version).
    pub previous_store: Option<String>,
    pub held: bool,
}

/// The start-up decision: the containers to adopt, or the refusal
/// ([`Error::ForeignContainers`]) when any container is foreign and
/// `adopt_foreign` is off. Decides only; nothing is changed.
pub(crate) fn decide(
    instance: &str,
    containers: &[Seen<'_>],
    facts: &Facts<'_>,
    adopt_foreign: bool,
) -> Result<Vec<Adoption>, Error> {
    let mut adoptions = Vec::new();
    let mut foreign = 0usize;
    let mut unlabelled = 0usize;
    let mut stores = BTreeSet::new();
    let mut data_dirs = BTreeSet::new();
    for c in containers {
        match classify(*c, facts, adopt_foreign) {
            Verdict::Own => {}
            Verdict::Adopt { held } => adoptions.push(Adoption {
                id: c.id.to_string(),
                pod: c.pod().map(str::to_string),
                previous_store: c.store().map(str::to_string),
                held,
            }),
            Verdict::Foreign => {
                foreign += 1;
                match c.store() {
                    Some(s) => {
                        stores.insert(s.to_string());
                    }
                    None => unlabelled += 1,
                }
                if let Some(dir) = c.labels.get(LABEL_DATA_DIR) {
                    data_dirs.insert(dir.clone());
                }
            }
        }
    }
    if foreign > 0 {
        return Err(Error::ForeignContainers {
            instance: instance.to_string(),
            count: foreign,
            store_id: facts.store_id.to_string(),
            other_stores: stores.into_iter().collect(),
            data_dirs: data_dirs.into_iter().collect(),
            unlabelled,
        });
    }
    Ok(adoptions)
}

/// The ownership rule at run time, shared by every engine call that lists
/// containers: [`Runtime::list`](crate::owned_engine::Runtime) returns only the
/// containers this store manages.
#[derive(Debug)]
pub(crate) struct Ownership {
    store_id: String,
    data_dir: String,
    state: StdMutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Adopted and managed like our own.
    adopted: HashSet<String>,
    /// Adopted, but their pod is not in the store: left alone. id → pod.
    held: HashMap<String, Option<String>>,
    /// Foreign containers seen after the start (logged once each).
    foreign: HashSet<String>,
}

impl Ownership {
    pub(crate) fn new(store_id: String, data_dir: String) -> Ownership {
        Ownership {
            store_id,
            data_dir,
            state: StdMutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    pub(crate) fn store_id(&self) -> &str {
        &self.store_id
    }

    /// The labels every container this server creates carries.
    pub(crate) fn labels(&self) -> [(String, String); 2] {
        [
            (LABEL_STORE.to_string(), self.store_id.clone()),
            (LABEL_DATA_DIR.to_string(), self.data_dir.clone()),
        ]
    }

    /// Loads the adopted containers recorded in the store: (id, pod, held).
    pub(crate) fn load(&self, adopted: impl IntoIterator<Item = (String, Option<String>, bool)>) {
        let mut state = self.state();
        for (id, pod, held) in adopted {
            if held {
                state.held.insert(id, pod);
            } else {
                state.adopted.insert(id);
            }
        }
    }

    /// Whether the controller manages this container (plans, stops, removes, routes).
    pub(crate) fn manages(&self, id: &str, labels: &HashMap<String, String>) -> bool {
        labels.get(LABEL_STORE).map(String::as_str) == Some(self.store_id.as_str()) || self.state().adopted.contains(id)
    }

    /// Whether this store owns it at all (managed, or adopted and held).
    pub(crate) fn owns(&self, id: &str, labels: &HashMap<String, String>) -> bool {
        self.manages(id, labels) || self.state().held.contains_key(id)
    }

    /// Notes a container that is not ours; true the first time it is seen.
    pub(crate) fn note_foreign(&self, id: &str) -> bool {
        self.state().foreign.insert(id.to_string())
    }

    /// Held containers of `pod` become managed (the pod was applied); returns them.
    pub(crate) fn release_held(&self, pod: &str) -> Vec<String> {
        let mut state = self.state();
        let ids: Vec<String> = state
            .held
            .iter()
            .filter(|(_, p)| p.as_deref() == Some(pod))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            state.held.remove(id);
            state.adopted.insert(id.clone());
        }
        ids
    }

    /// Whether any held container belongs to `pod`.
    pub(crate) fn has_held(&self, pod: &str) -> bool {
        self.state().held.values().any(|p| p.as_deref() == Some(pod))
    }

    /// How many adopted containers are held (their pod is not in the store).
    pub(crate) fn held_count(&self) -> usize {
        self.state().held.len()
    }

    /// How many foreign containers were seen since the start.
    pub(crate) fn foreign_count(&self) -> usize {
        self.state().foreign.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(store: Option<&str>, role: &str, pod: Option<&str>, dir: Option<&str>) -> HashMap<String, String> {
        let mut l = HashMap::from([(LABEL_ROLE.to_string(), role.to_string())]);
        if let Some(s) = store {
            l.insert(LABEL_STORE.into(), s.into());
        }
        if let Some(p) = pod {
            l.insert(LABEL_POD.into(), p.into());
        }
        if let Some(d) = dir {
            l.insert(LABEL_DATA_DIR.into(), d.into());
        }
        l
    }

    fn facts<'a>(pods: &'a HashSet<String>, adopted: &'a HashSet<String>, upgraded: bool) -> Facts<'a> {
        Facts {
            store_id: "ours",
            upgraded,
            pods,
            adopted,
        }
    }

    #[test]
    fn our_label_or_an_adoption_record_is_ours() {
        let pods = HashSet::new();
        let adopted = HashSet::from(["c2".to_string()]);
        let f = facts(&pods, &adopted, false);
        let own = labels(Some("ours"), "replica", Some("web"), None);
        let other = labels(Some("theirs"), "replica", Some("web"), None);
        assert_eq!(classify(Seen { id: "c1", labels: &own }, &f, false), Verdict::Own);
        assert_eq!(
            classify(
                Seen {
                    id: "c2",
                    labels: &other
                },
                &f,
                false
            ),
            Verdict::Own
        );
        assert_eq!(
            classify(
                Seen {
                    id: "c3",
                    labels: &other
                },
                &f,
                false
            ),
            Verdict::Foreign
        );
    }

    #[test]
    fn a_new_store_refuses_unlabelled_and_foreign_containers_naming_them() {
        let pods = HashSet::new();
        let adopted = HashSet::new();
        let f = facts(&pods, &adopted, false);
        let a = labels(Some("s1"), "replica", Some("web"), Some("/old/data"));
        let b = labels(Some("s1"), "ingress", None, Some("/old/data"));
        let c = labels(None, "replica", Some("web"), None);
        let seen = [
            Seen { id: "a", labels: &a },
            Seen { id: "b", labels: &b },
            Seen { id: "c", labels: &c },
        ];
        match decide("prod", &seen, &f, false) {
            Err(Error::ForeignContainers {
                instance,
                count,
                other_stores,
                data_dirs,
                unlabelled,
                ..
            }) => {
                assert_eq!(instance, "prod");
                assert_eq!(count, 3);
                assert_eq!(other_stores, ["s1"]);
                assert_eq!(data_dirs, ["/old/data"]);
                assert_eq!(unlabelled, 1);
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_refusal_message_names_the_ways_out() {
        let pods = HashSet::new();
        let adopted = HashSet::new();
        let a = labels(Some("s1"), "replica", Some("web"), Some("/old/data"));
        let err = decide(
            "prod",
            &[Seen { id: "a", labels: &a }],
            &facts(&pods, &adopted, false),
            false,
        )
        .expect_err("refused");
        let text = err.to_string();
        for needle in [
            "prod",
            "1 container",
            "s1",
            "/old/data",
            "--data-dir",
            "--adopt-foreign",
        ] {
            assert!(text.contains(needle), "{needle:?} missing in: {text}");
        }
    }

    #[test]
    fn adopt_foreign_takes_everything_and_holds_what_no_pod_of_ours_claims() {
        let pods = HashSet::from(["web".to_string()]);
        let adopted = HashSet::new();
        let f = facts(&pods, &adopted, false);
        let web = labels(Some("s1"), "replica", Some("web"), None);
        let api = labels(None, "replica", Some("api"), None);
        let ingress = labels(Some("s1"), "ingress", None, None);
        let seen = [
            Seen { id: "w", labels: &web },
            Seen { id: "a", labels: &api },
            Seen {
                id: "i",
                labels: &ingress,
            },
        ];
        let adoptions = decide("prod", &seen, &f, true).expect("adopted");
        let held: Vec<(&str, bool)> = adoptions.iter().map(|a| (a.id.as_str(), a.held)).collect();
        assert_eq!(held, [("w", false), ("a", true), ("i", false)]);
        assert_eq!(adoptions[0].previous_store.as_deref(), Some("s1"));
        assert_eq!(adoptions[1].previous_store, None);
    }

    #[test]
    fn an_upgraded_store_adopts_the_unlabelled_containers_of_its_own_pods_only() {
        let pods = HashSet::from(["web".to_string()]);
        let adopted = HashSet::new();
        let f = facts(&pods, &adopted, true);
        let web = labels(None, "replica", Some("web"), None);
        let ingress = labels(None, "ingress", None, None);
        let stranger = labels(None, "replica", Some("other"), None);
        let labelled = labels(Some("s1"), "replica", Some("web"), None);
        assert_eq!(
            classify(Seen { id: "w", labels: &web }, &f, false),
            Verdict::Adopt { held: false }
        );
        assert_eq!(
            classify(
                Seen {
                    id: "i",
                    labels: &ingress
                },
                &f,
                false
            ),
            Verdict::Adopt { held: false }
        );
        assert_eq!(
            classify(
                Seen {
                    id: "s",
                    labels: &stranger
                },
                &f,
                false
            ),
            Verdict::Foreign
        );
        // Another store's label is never "an older version": still foreign.
        assert_eq!(
            classify(
                Seen {
                    id: "l",
                    labels: &labelled
                },
                &f,
                false
            ),
            Verdict::Foreign
        );
        // Not upgraded (the store has its id): unlabelled ones are foreign.
        let f = facts(&pods, &adopted, false);
        assert_eq!(classify(Seen { id: "w", labels: &web }, &f, false), Verdict::Foreign);
    }

    #[test]
    fn nothing_foreign_means_nothing_to_do() {
        let pods = HashSet::new();
        let adopted = HashSet::new();
        let own = labels(Some("ours"), "replica", Some("web"), None);
        let adoptions = decide(
            "prod",
            &[Seen { id: "a", labels: &own }],
            &facts(&pods, &adopted, false),
            false,
        )
        .expect("ours");
        assert!(adoptions.is_empty());
        assert!(
            decide("prod", &[], &facts(&pods, &adopted, false), false)
                .expect("empty")
                .is_empty()
        );
    }

    #[test]
    fn run_time_rule_manages_own_and_adopted_and_releases_held_on_apply() {
        let o = Ownership::new("ours".into(), "/data".into());
        o.load([
            ("adopted".to_string(), Some("web".to_string()), false),
            ("held".to_string(), Some("api".to_string()), true),
        ]);
        let foreign = labels(Some("theirs"), "replica", Some("api"), None);
        let own = labels(Some("ours"), "replica", Some("web"), None);
        assert!(o.manages("x", &own));
        assert!(o.manages("adopted", &foreign));
        assert!(!o.manages("held", &foreign));
        assert!(o.owns("held", &foreign));
        assert!(!o.owns("stranger", &foreign));
        assert!(o.has_held("api"));
        assert_eq!(o.release_held("api"), ["held"]);
        assert!(o.manages("held", &foreign));
        assert_eq!(o.held_count(), 0);
        assert!(o.note_foreign("stranger"));
        assert!(!o.note_foreign("stranger"));
        assert_eq!(o.foreign_count(), 1);
    }
}
