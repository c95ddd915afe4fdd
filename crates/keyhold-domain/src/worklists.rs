//! A professional's own lists in one organisation: the records they opened
//! lately ("recently accessed", the last [`MAX_RECENT_RECORDS`]) and
//! worklists (named lists of people they are looking after).
//!
//! Which patients a professional looks at is itself sensitive, so everything
//! here is sealed under the professional's *account* data key, bound (by the
//! AAD) to the account, the organisation, the list and the row's version. A
//! store key holds only the account id, the organisation id and a random list
//! id: no patient id, name, NHS number or list name is stored in the clear.
//!
//! Each row keeps a snapshot of who the person is (name, NHS number, date of
//! birth: what even a sensitive record shows others) as the professional last
//! saw them through the policy, so a list is shown without opening every
//! record. The privacy rule: a listing shows a person's identity and a link
//! only while [`Keyhold::may_read`] still allows the professional, *as a member
//! of this organisation*, to read the record now (decided on the live consent
//! state on every listing). Otherwise the row says only that access has ended,
//! and can still be removed. Adding a person needs the same permission, and
//! the snapshot is taken by an audited read of their demographics.
//!
//! Every function refuses ("not found") a principal who is not an active
//! clinical member of the organisation; a system (feed) never has lists.
//!
//! Concurrency: each change is a read-modify-write of one sealed row (the
//! list of names for creating, renaming and deleting; the list's own row for
//! adding and removing people), submitted with a `require_equals`
//! precondition on what was read. On a conflict the change is worked out
//! again from a fresh read, up to [`ATTEMPTS`] times; after that it fails with
//! [`DomainError::Conflict`] and nothing is written.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use keyhold_storage::{Batch, StorageError, TreeName};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::ids::KeyOwner;
use crate::policy::Principal;
use crate::rows::b64;
use crate::trees::{pair, RECENT_RECORDS, WORKLISTS, WORKLIST_NAMES};
use crate::vault::{Aad, ProfessionalList};
use crate::{AccountId, Demographics, DomainError, FieldError, Keyhold, OrgId, PatientId};

/// How many distinct records "recently accessed" keeps, per professional and organisation.
pub const MAX_RECENT_RECORDS: usize = 20;
/// How many worklists a professional may have in one organisation.
pub const MAX_WORKLISTS: usize = 50;
/// How many people one worklist may hold.
pub const MAX_PEOPLE_PER_WORKLIST: usize = 500;
/// The longest a worklist's name may be, in characters (after trimming).
pub const MAX_WORKLIST_NAME_CHARS: usize = 80;
/// Tries at a read-modify-write before giving up with `Conflict`. An attempt
/// fails only when another change to the same row was written meanwhile, so
/// this many changes at once to one professional's list all get through.
const ATTEMPTS: usize = 5;

/// One worklist. Random, so it says nothing about its name or its people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorklistId(Uuid);

impl WorklistId {
    pub fn new_random() -> Self {
        WorklistId(Uuid::new_v4())
    }
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for WorklistId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for WorklistId {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(WorklistId)
            .map_err(|_| DomainError::NotFound)
    }
}

/// Who a person is, as the professional last saw them through the policy:
/// only what a sensitive record still shows others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonSeen {
    /// Empty when the record has no name.
    pub name: String,
    /// Formatted for reading (`943 476 5919`).
    pub nhs_number: Option<String>,
    pub date_of_birth: Option<Date>,
}

impl PersonSeen {
    fn of(d: &Demographics) -> Self {
        PersonSeen {
            name: d.full_name(),
            nhs_number: d.nhs_number.map(|n| n.to_string()),
            date_of_birth: d.date_of_birth,
        }
    }
}

/// One row of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedPerson {
    /// A random id: needed to open the record or to remove the row.
    pub patient: PatientId,
    /// Who they are, only while the professional may still read the record;
    /// `None` means access has ended, and nothing of who they are is shown.
    pub seen: Option<PersonSeen>,
    /// When the record was opened (recently accessed) or the person added (a worklist).
    pub at: OffsetDateTime,
}

/// A worklist in the list of worklists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorklistSummary {
    pub id: WorklistId,
    pub name: String,
    pub people: usize,
    /// Whether it holds the person being added (false when no one is).
    pub includes: bool,
}

/// One worklist and its people, in the order they were added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worklist {
    pub id: WorklistId,
    pub name: String,
    pub people: Vec<ListedPerson>,
}

// ---------------------------------------------------------------------------
// What is stored

/// Every row here: a version (bound into the AAD) and the sealed JSON of the
/// list. Nothing else is in the clear.
#[derive(Serialize, Deserialize)]
struct SealedListRowV1 {
    version: u32,
    #[serde(with = "b64")]
    sealed: Vec<u8>,
}

/// A record opened (sealed inside a `RECENT_RECORDS` row).
#[derive(Clone, Serialize, Deserialize)]
struct Opened {
    patient: PatientId,
    seen: PersonSeen,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
}

/// A worklist's id and name (sealed inside a `WORKLIST_NAMES` row).
#[derive(Clone, Serialize, Deserialize)]
struct Named {
    id: WorklistId,
    name: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

/// A person on a worklist (sealed inside a `WORKLISTS` row).
#[derive(Clone, Serialize, Deserialize)]
struct OnList {
    patient: PatientId,
    seen: PersonSeen,
    #[serde(with = "time::serde::rfc3339")]
    added_at: OffsetDateTime,
    /// When `seen` was taken (a later opening of the record may know better).
    #[serde(with = "time::serde::rfc3339")]
    seen_at: OffsetDateTime,
}

/// What a change was based on: the raw row read (the precondition) and its version.
struct Base {
    raw: Option<Vec<u8>>,
    version: u32,
}

struct Loaded<T> {
    base: Base,
    value: T,
}

fn worklist_key(account: AccountId, org: OrgId, id: WorklistId) -> Vec<u8> {
    let mut k = pair(account.as_bytes(), org.as_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// The principal, narrowed to its membership of `org`, if that membership
/// is active and clinical; "not found" otherwise. Deciding with the narrowed
/// principal means a list in one organisation never shows people its holder
/// may read only through another.
fn professional_in(p: &Principal, org: OrgId) -> Result<Principal, DomainError> {
    let clinical = p
        .memberships
        .iter()
        .any(|m| m.org == org && m.role.is_clinical());
    if !clinical || p.is_system() {
        return Err(DomainError::NotFound);
    }
    Ok(Principal {
        memberships: p
            .memberships
            .iter()
            .filter(|m| m.org == org)
            .copied()
            .collect(),
        ..p.clone()
    })
}

/// A name as typed, checked: trimmed, 1 to 80 characters, no control
/// characters, and unlike every other list's (ignoring case).
fn checked_name(
    typed: &str,
    lists: &[Named],
    except: Option<WorklistId>,
) -> Result<String, DomainError> {
    let name = typed.trim();
    let problem = if name.is_empty() {
        Some("Enter a name for the worklist".to_string())
    } else if name.chars().count() > MAX_WORKLIST_NAME_CHARS {
        Some(format!(
            "The name must be {MAX_WORKLIST_NAME_CHARS} characters or fewer"
        ))
    } else if name.chars().any(char::is_control) {
        Some("The name must be on one line".to_string())
    } else {
        let lower = name.to_lowercase();
        lists
            .iter()
            .any(|l| Some(l.id) != except && l.name.to_lowercase() == lower)
            .then(|| "You already have a worklist with this name. Choose another name".to_string())
    };
    match problem {
        Some(message) => Err(DomainError::Invalid(vec![FieldError::new("name", message)])),
        None => Ok(name.to_string()),
    }
}

/// Whether the (narrowed) principal may read each patient now, asked once
/// per patient per listing.
struct Live<'a> {
    core: &'a Keyhold,
    who: &'a Principal,
    known: HashMap<PatientId, bool>,
}

impl Live<'_> {
    fn may_read(&mut self, patient: PatientId) -> Result<bool, DomainError> {
        if let Some(known) = self.known.get(&patient) {
            return Ok(*known);
        }
        let now = self.core.may_read(self.who, patient)?;
        self.known.insert(patient, now);
        Ok(now)
    }

    fn show(
        &mut self,
        patient: PatientId,
        seen: &PersonSeen,
        at: OffsetDateTime,
    ) -> Result<ListedPerson, DomainError> {
        Ok(ListedPerson {
            patient,
            seen: self.may_read(patient)?.then(|| seen.clone()),
            at,
        })
    }
}

impl Keyhold {
    fn load_list<T: DeserializeOwned + Default>(
        &self,
        account: AccountId,
        tree: TreeName,
        kind: ProfessionalList,
        key: &[u8],
    ) -> Result<Loaded<T>, DomainError> {
        let Some(raw) = self.store.get(tree, key)? else {
            return Ok(Loaded {
                base: Base {
                    raw: None,
                    version: 0,
                },
                value: T::default(),
            });
        };
        let row: SealedListRowV1 = serde_json::from_slice(&raw)?;
        let dek = self.vault.key(KeyOwner::Account(account))?;
        let plain = self.vault.open(
            &dek,
            &Aad::professional_list(account, kind, key, row.version),
            &row.sealed,
        )?;
        Ok(Loaded {
            base: Base {
                raw: Some(raw),
                version: row.version,
            },
            value: serde_json::from_slice(&plain)?,
        })
    }

    /// Adds to `batch` the next version of a list row, on condition that the
    /// row is still what `base` read.
    #[allow(clippy::too_many_arguments)]
    fn put_list<T: Serialize>(
        &self,
        batch: &mut Batch,
        account: AccountId,
        tree: TreeName,
        kind: ProfessionalList,
        key: &[u8],
        base: &Base,
        value: &T,
    ) -> Result<(), DomainError> {
        let version = base.version + 1;
        let dek = self.vault.key(KeyOwner::Account(account))?;
        let plain = Zeroizing::new(serde_json::to_vec(value)?);
        let sealed = self.vault.seal(
            &dek,
            &Aad::professional_list(account, kind, key, version),
            &plain,
        )?;
        batch.require_equals(tree, key.to_vec(), base.raw.clone());
        batch.put(
            tree,
            key.to_vec(),
            serde_json::to_vec(&SealedListRowV1 { version, sealed })?,
        );
        Ok(())
    }

    /// `true` once written; `false` when another change got there first.
    async fn commit_unless_changed(&self, batch: Batch) -> Result<bool, DomainError> {
        match self.store.submit(batch).await {
            Ok(_) => Ok(true),
            Err(StorageError::Conflict) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn recents(&self, account: AccountId, org: OrgId) -> Result<Loaded<Vec<Opened>>, DomainError> {
        self.load_list(
            account,
            RECENT_RECORDS,
            ProfessionalList::RecentRecords,
            &pair(account.as_bytes(), org.as_bytes()),
        )
    }

    fn worklist_names(
        &self,
        account: AccountId,
        org: OrgId,
    ) -> Result<Loaded<Vec<Named>>, DomainError> {
        self.load_list(
            account,
            WORKLIST_NAMES,
            ProfessionalList::WorklistNames,
            &pair(account.as_bytes(), org.as_bytes()),
        )
    }

    fn worklist_people(
        &self,
        account: AccountId,
        org: OrgId,
        id: WorklistId,
    ) -> Result<Loaded<Vec<OnList>>, DomainError> {
        self.load_list(
            account,
            WORKLISTS,
            ProfessionalList::Worklist,
            &worklist_key(account, org, id),
        )
    }

    // -----------------------------------------------------------------------
    // Recently accessed

    /// Called by [`Keyhold::record`] after a read allowed for `org` has been
    /// audited: puts the record at the top of the professional's recently
    /// accessed records for `org`. Does nothing for anyone but an active
    /// clinical member of `org`. Never fails the read: a problem is logged
    /// (without patient data) and the list is left as it was.
    pub(crate) async fn remember_recent(
        &self,
        p: &Principal,
        org: OrgId,
        patient: PatientId,
        seen: &Demographics,
    ) {
        if professional_in(p, org).is_err() {
            return;
        }
        if let Err(e) = self
            .remember_recent_now(p.account, org, patient, PersonSeen::of(seen))
            .await
        {
            tracing::warn!(error = %e, "could not update the recently accessed records");
        }
    }

    async fn remember_recent_now(
        &self,
        account: AccountId,
        org: OrgId,
        patient: PatientId,
        seen: PersonSeen,
    ) -> Result<(), DomainError> {
        let key = pair(account.as_bytes(), org.as_bytes());
        let at = self.clock.now();
        for _ in 0..ATTEMPTS {
            let mut recents = self.recents(account, org)?;
            recents.value.retain(|o| o.patient != patient);
            recents.value.insert(
                0,
                Opened {
                    patient,
                    seen: seen.clone(),
                    at,
                },
            );
            recents.value.truncate(MAX_RECENT_RECORDS);
            let mut batch = Batch::new();
            self.put_list(
                &mut batch,
                account,
                RECENT_RECORDS,
                ProfessionalList::RecentRecords,
                &key,
                &recents.base,
                &recents.value,
            )?;
            if self.commit_unless_changed(batch).await? {
                return Ok(());
            }
        }
        Err(DomainError::Conflict)
    }

    /// The records the professional opened for `org`, newest first; a person
    /// whose record they may no longer read shows as access ended.
    pub fn recent_records(
        &self,
        p: &Principal,
        org: OrgId,
    ) -> Result<Vec<ListedPerson>, DomainError> {
        let who = professional_in(p, org)?;
        let mut live = Live {
            core: self,
            who: &who,
            known: HashMap::new(),
        };
        self.recents(p.account, org)?
            .value
            .iter()
            .map(|o| live.show(o.patient, &o.seen, o.at))
            .collect()
    }

    // -----------------------------------------------------------------------
    // Worklists

    /// The professional's worklists in `org`, by name.
    pub fn worklists(
        &self,
        p: &Principal,
        org: OrgId,
    ) -> Result<Vec<WorklistSummary>, DomainError> {
        professional_in(p, org)?;
        self.summaries(p.account, org, None)
    }

    /// For "add to a worklist": who the person is, as the professional last
    /// saw them (if they opened the record lately), and the worklists, each
    /// saying whether it holds them. "Not found" unless the professional may
    /// read the record now.
    pub fn worklist_choices(
        &self,
        p: &Principal,
        org: OrgId,
        patient: PatientId,
    ) -> Result<(Option<PersonSeen>, Vec<WorklistSummary>), DomainError> {
        let who = professional_in(p, org)?;
        if !self.may_read(&who, patient)? {
            return Err(DomainError::NotFound);
        }
        let seen = self
            .recents(p.account, org)?
            .value
            .into_iter()
            .find(|o| o.patient == patient)
            .map(|o| o.seen);
        Ok((seen, self.summaries(p.account, org, Some(patient))?))
    }

    fn summaries(
        &self,
        account: AccountId,
        org: OrgId,
        patient: Option<PatientId>,
    ) -> Result<Vec<WorklistSummary>, DomainError> {
        let mut out = Vec::new();
        for named in self.worklist_names(account, org)?.value {
            let people = self.worklist_people(account, org, named.id)?.value;
            out.push(WorklistSummary {
                id: named.id,
                name: named.name,
                people: people.len(),
                includes: patient.is_some_and(|x| people.iter().any(|o| o.patient == x)),
            });
        }
        out.sort_by_cached_key(|s| s.name.to_lowercase());
        Ok(out)
    }

    /// One worklist and its people. A person is shown as last seen (on the
    /// list, or in a later opening of the record, whichever is newer) while
    /// the professional may read their record; otherwise as access ended.
    pub fn worklist(
        &self,
        p: &Principal,
        org: OrgId,
        id: WorklistId,
    ) -> Result<Worklist, DomainError> {
        let who = professional_in(p, org)?;
        let named = self
            .worklist_names(p.account, org)?
            .value
            .into_iter()
            .find(|n| n.id == id)
            .ok_or(DomainError::NotFound)?;
        let people = self.worklist_people(p.account, org, id)?;
        if people.base.raw.is_none() {
            return Err(DomainError::NotFound);
        }
        let later: HashMap<PatientId, Opened> = self
            .recents(p.account, org)?
            .value
            .into_iter()
            .map(|o| (o.patient, o))
            .collect();
        let mut live = Live {
            core: self,
            who: &who,
            known: HashMap::new(),
        };
        let people = people
            .value
            .iter()
            .map(|o| {
                let seen = match later.get(&o.patient) {
                    Some(l) if l.at > o.seen_at => &l.seen,
                    _ => &o.seen,
                };
                live.show(o.patient, seen, o.added_at)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Worklist {
            id,
            name: named.name,
            people,
        })
    }

    /// Who the person is, read (and audited) through the policy now, for a
    /// new row of a worklist; "not found" unless the principal may read it.
    async fn seen_for_list(
        &self,
        who: &Principal,
        patient: PatientId,
    ) -> Result<PersonSeen, DomainError> {
        if !self.may_read(who, patient)? {
            return Err(DomainError::NotFound);
        }
        Ok(PersonSeen::of(&self.demographics(who, patient).await?))
    }

    /// Creates a worklist, with `first` on it when given (the professional
    /// must then be allowed to read that record now). Field errors name
    /// `name`: empty, too long, already used (ignoring case), or too many lists.
    pub async fn create_worklist(
        &self,
        p: &Principal,
        org: OrgId,
        name: &str,
        first: Option<PatientId>,
    ) -> Result<WorklistId, DomainError> {
        let who = professional_in(p, org)?;
        // Check the name before anything is read from a record.
        checked_name(name, &self.worklist_names(p.account, org)?.value, None)?;
        let first = match first {
            Some(patient) => Some((patient, self.seen_for_list(&who, patient).await?)),
            None => None,
        };
        let account = p.account;
        let key = pair(account.as_bytes(), org.as_bytes());
        for _ in 0..ATTEMPTS {
            let mut names = self.worklist_names(account, org)?;
            let name = checked_name(name, &names.value, None)?;
            if names.value.len() >= MAX_WORKLISTS {
                return Err(DomainError::invalid(
                    "name",
                    format!(
                        "You have {MAX_WORKLISTS} worklists, the most you can have. Delete one you no longer need first"
                    ),
                ));
            }
            let now = self.clock.now();
            let id = WorklistId::new_random();
            names.value.push(Named {
                id,
                name,
                created_at: now,
            });
            let people: Vec<OnList> = first
                .iter()
                .map(|(patient, seen)| OnList {
                    patient: *patient,
                    seen: seen.clone(),
                    added_at: now,
                    seen_at: now,
                })
                .collect();
            let mut batch = Batch::new();
            self.put_list(
                &mut batch,
                account,
                WORKLIST_NAMES,
                ProfessionalList::WorklistNames,
                &key,
                &names.base,
                &names.value,
            )?;
            self.put_list(
                &mut batch,
                account,
                WORKLISTS,
                ProfessionalList::Worklist,
                &worklist_key(account, org, id),
                &Base {
                    raw: None,
                    version: 0,
                },
                &people,
            )?;
            if self.commit_unless_changed(batch).await? {
                return Ok(id);
            }
        }
        Err(DomainError::Conflict)
    }

    /// Renames a worklist (the same checks as creating one).
    pub async fn rename_worklist(
        &self,
        p: &Principal,
        org: OrgId,
        id: WorklistId,
        name: &str,
    ) -> Result<(), DomainError> {
        professional_in(p, org)?;
        let account = p.account;
        let key = pair(account.as_bytes(), org.as_bytes());
        for _ in 0..ATTEMPTS {
            let mut names = self.worklist_names(account, org)?;
            let name = checked_name(name, &names.value, Some(id))?;
            let named = names
                .value
                .iter_mut()
                .find(|n| n.id == id)
                .ok_or(DomainError::NotFound)?;
            if named.name == name {
                return Ok(());
            }
            named.name = name;
            let mut batch = Batch::new();
            self.put_list(
                &mut batch,
                account,
                WORKLIST_NAMES,
                ProfessionalList::WorklistNames,
                &key,
                &names.base,
                &names.value,
            )?;
            if self.commit_unless_changed(batch).await? {
                return Ok(());
            }
        }
        Err(DomainError::Conflict)
    }

    /// Deletes a worklist and everyone on it (from the list; nothing else).
    pub async fn delete_worklist(
        &self,
        p: &Principal,
        org: OrgId,
        id: WorklistId,
    ) -> Result<(), DomainError> {
        professional_in(p, org)?;
        let account = p.account;
        let key = pair(account.as_bytes(), org.as_bytes());
        for _ in 0..ATTEMPTS {
            let mut names = self.worklist_names(account, org)?;
            let before = names.value.len();
            names.value.retain(|n| n.id != id);
            if names.value.len() == before {
                return Err(DomainError::NotFound);
            }
            let mut batch = Batch::new();
            self.put_list(
                &mut batch,
                account,
                WORKLIST_NAMES,
                ProfessionalList::WorklistNames,
                &key,
                &names.base,
                &names.value,
            )?;
            batch.delete(WORKLISTS, worklist_key(account, org, id));
            if self.commit_unless_changed(batch).await? {
                return Ok(());
            }
        }
        Err(DomainError::Conflict)
    }

    /// Adds a person the professional may read now (otherwise "not found");
    /// `true` if added, `false` if already there (their snapshot is renewed).
    /// A full list is a field error on `worklist`.
    pub async fn add_to_worklist(
        &self,
        p: &Principal,
        org: OrgId,
        id: WorklistId,
        patient: PatientId,
    ) -> Result<bool, DomainError> {
        let who = professional_in(p, org)?;
        let account = p.account;
        if self.worklist_people(account, org, id)?.base.raw.is_none() {
            return Err(DomainError::NotFound);
        }
        let seen = self.seen_for_list(&who, patient).await?;
        let key = worklist_key(account, org, id);
        for _ in 0..ATTEMPTS {
            let mut people = self.worklist_people(account, org, id)?;
            if people.base.raw.is_none() {
                return Err(DomainError::NotFound);
            }
            let now = self.clock.now();
            let full = people.value.len() >= MAX_PEOPLE_PER_WORKLIST;
            let added = match people.value.iter_mut().find(|o| o.patient == patient) {
                Some(on) => {
                    on.seen = seen.clone();
                    on.seen_at = now;
                    false
                }
                None if full => {
                    return Err(DomainError::invalid(
                        "worklist",
                        format!(
                            "This worklist has {MAX_PEOPLE_PER_WORKLIST} people, the most it can hold. Remove someone first, or use another list"
                        ),
                    ))
                }
                None => {
                    people.value.push(OnList {
                        patient,
                        seen: seen.clone(),
                        added_at: now,
                        seen_at: now,
                    });
                    true
                }
            };
            let mut batch = Batch::new();
            self.put_list(
                &mut batch,
                account,
                WORKLISTS,
                ProfessionalList::Worklist,
                &key,
                &people.base,
                &people.value,
            )?;
            if self.commit_unless_changed(batch).await? {
                return Ok(added);
            }
        }
        Err(DomainError::Conflict)
    }

    /// Takes a person off a worklist, whether or not their record can still
    /// be read. Removing someone not on it changes nothing.
    pub async fn remove_from_worklist(
        &self,
        p: &Principal,
        org: OrgId,
        id: WorklistId,
        patient: PatientId,
    ) -> Result<(), DomainError> {
        professional_in(p, org)?;
        let account = p.account;
        let key = worklist_key(account, org, id);
        for _ in 0..ATTEMPTS {
            let mut people = self.worklist_people(account, org, id)?;
            if people.base.raw.is_none() {
                return Err(DomainError::NotFound);
            }
            let before = people.value.len();
            people.value.retain(|o| o.patient != patient);
            if people.value.len() == before {
                return Ok(());
            }
            let mut batch = Batch::new();
            self.put_list(
                &mut batch,
                account,
                WORKLISTS,
                ProfessionalList::Worklist,
                &key,
                &people.base,
                &people.value,
            )?;
            if self.commit_unless_changed(batch).await? {
                return Ok(());
            }
        }
        Err(DomainError::Conflict)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::sync::Arc;

    use time::macros::{date, datetime};
    use time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::consent::{Membership, Permissions, StaffRole};
    use crate::identity::IdentityLevel;
    use crate::keystore::{init_keys, load_keys};
    use crate::{
        open_memory_store, Category, GrantId, GrantTerms, NewGrantee, NhsNumber, Settings,
    };

    struct Env {
        _dir: tempfile::TempDir,
        clock: Arc<ManualClock>,
        core: Arc<Keyhold>,
        org: OrgId,
    }

    fn nhs(n: u32) -> NhsNumber {
        (0..100)
            .find_map(|k| {
                let nine = 943_476_000 + n * 100 + k;
                let digits: Vec<u8> = nine.to_string().bytes().map(|b| b - b'0').collect();
                NhsNumber::from_nine(digits.try_into().unwrap())
            })
            .unwrap()
    }

    impl Env {
        async fn new() -> Env {
            let dir = tempfile::tempdir().unwrap();
            let keys = dir.path().join("keys");
            init_keys(&keys).unwrap();
            let clock = Arc::new(ManualClock::new(datetime!(2026-03-02 09:00 UTC)));
            let core = Keyhold::with_store(
                open_memory_store().unwrap(),
                load_keys(&keys).unwrap(),
                Settings {
                    danger_fast_hashing: true,
                    ..Default::default()
                },
                clock.clone(),
            )
            .unwrap();
            core.create_account_for(
                "Ada Admin",
                "admin@riverside.test",
                "correct horse battery",
                None,
            )
            .await
            .unwrap();
            let (org, _) = core
                .create_organisation("Riverside Surgery", "admin@riverside.test")
                .await
                .unwrap();
            Env {
                _dir: dir,
                clock,
                core,
                org,
            }
        }

        /// An account holding `role` in the test organisation.
        async fn member(&self, email: &str, role: StaffRole) -> Principal {
            let account = self
                .core
                .create_account_for("Dr Member", email, "correct horse battery", None)
                .await
                .unwrap();
            self.core.add_member(self.org, account, role).await.unwrap();
            Principal {
                account,
                own_patient: None,
                level: IdentityLevel::P0,
                memberships: vec![Membership {
                    org: self.org,
                    role,
                }],
            }
        }

        /// A patient (their own principal, to share and revoke with).
        async fn patient(&self, n: u32, family: &str) -> Principal {
            let mut d = Demographics::empty();
            d.given_name = "Pat".into();
            d.family_name = family.into();
            d.nhs_number = Some(nhs(n));
            d.date_of_birth = Some(date!(1980 - 05 - 17));
            let record = self.core.register_patient(d).await.unwrap();
            Principal::patient(AccountId::new_random(), Some(record), IdentityLevel::P9)
        }

        async fn share(&self, owner: &Principal) -> GrantId {
            self.core
                .share(
                    owner,
                    owner.own_patient.unwrap(),
                    NewGrantee::Organisation(self.org),
                    GrantTerms {
                        permissions: Permissions {
                            read: true,
                            contribute: false,
                            act_on_behalf: false,
                        },
                        categories: [Category::General].into_iter().collect(),
                        last_day: self.core.today() + Duration::days(30),
                        purpose: "My GP surgery".into(),
                    },
                )
                .await
                .unwrap()
        }

        async fn shared_patient(&self, n: u32, family: &str) -> (Principal, PatientId, GrantId) {
            let owner = self.patient(n, family).await;
            let grant = self.share(&owner).await;
            let record = owner.own_patient.unwrap();
            (owner, record, grant)
        }

        /// Every value in the professional lists' trees, raw.
        fn raw_rows(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
            let mut out = Vec::new();
            for tree in [RECENT_RECORDS, WORKLIST_NAMES, WORKLISTS] {
                for row in self.core.store().scan(tree, b"") {
                    out.push(row.unwrap());
                }
            }
            out
        }
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    fn invalid_field(r: Result<impl fmt::Debug, DomainError>) -> &'static str {
        match r {
            Err(DomainError::Invalid(errors)) => errors[0].field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn opening_records_keeps_the_last_twenty_distinct_newest_first() {
        let env = Env::new().await;
        let doc = env.member("doc@riverside.test", StaffRole::Doctor).await;
        let mut records = Vec::new();
        for n in 0..22 {
            let (_, record, _) = env.shared_patient(n, &format!("Person{n}")).await;
            records.push(record);
        }
        for record in &records {
            env.core.record(&doc, *record).await.unwrap();
            env.clock.advance(Duration::minutes(1));
        }
        // Reopening moves a record to the top without a second row.
        env.core.record(&doc, records[5]).await.unwrap();
        let recent = env.core.recent_records(&doc, env.org).unwrap();
        assert_eq!(recent.len(), MAX_RECENT_RECORDS);
        assert_eq!(recent[0].patient, records[5]);
        assert_eq!(recent[1].patient, records[21]);
        assert_eq!(recent.iter().filter(|r| r.patient == records[5]).count(), 1);
        // The oldest fell off the end.
        assert!(!recent.iter().any(|r| r.patient == records[0]));
        assert!(!recent.iter().any(|r| r.patient == records[1]));
        let seen = recent[0].seen.clone().unwrap();
        assert_eq!(seen.name, "Pat Person5");
        assert_eq!(seen.nhs_number, Some(nhs(5).to_string()));
        assert_eq!(seen.date_of_birth, Some(date!(1980 - 05 - 17)));
        assert!(recent.windows(2).all(|w| w[0].at >= w[1].at));
    }

    #[tokio::test]
    async fn only_reads_for_the_organisation_are_remembered_and_only_for_its_clinicians() {
        let env = Env::new().await;
        let doc = env.member("doc@riverside.test", StaffRole::Doctor).await;
        let admin = env
            .member("office@riverside.test", StaffRole::Administrator)
            .await;
        let (owner, record, _) = env.shared_patient(1, "Owner").await;
        // The patient reading their own record has no organisation basis.
        env.core.record(&owner, record).await.unwrap();
        assert!(env.raw_rows().is_empty());
        // Administrators and people outside the organisation get "not found".
        for p in [&admin, &owner] {
            assert!(matches!(
                env.core.recent_records(p, env.org),
                Err(DomainError::NotFound)
            ));
            assert!(matches!(
                env.core.worklists(p, env.org),
                Err(DomainError::NotFound)
            ));
            assert!(matches!(
                env.core.create_worklist(p, env.org, "Ward 3", None).await,
                Err(DomainError::NotFound)
            ));
        }
        // A doctor of another organisation cannot use this one's lists.
        let elsewhere = Principal {
            memberships: vec![Membership {
                org: OrgId::new_random(),
                role: StaffRole::Doctor,
            }],
            ..doc.clone()
        };
        assert!(matches!(
            env.core.recent_records(&elsewhere, env.org),
            Err(DomainError::NotFound)
        ));
        env.core.record(&doc, record).await.unwrap();
        assert_eq!(env.core.recent_records(&doc, env.org).unwrap().len(), 1);
        // Another doctor of the same organisation sees none of it.
        let other = env.member("other@riverside.test", StaffRole::Nurse).await;
        assert!(env.core.recent_records(&other, env.org).unwrap().is_empty());
    }

    #[tokio::test]
    async fn lists_show_nobody_whose_record_can_no_longer_be_read() {
        let env = Env::new().await;
        let doc = env.member("doc@riverside.test", StaffRole::Doctor).await;
        let (owner, record, grant) = env.shared_patient(1, "Revoked").await;
        let (_, kept, _) = env.shared_patient(2, "Kept").await;
        env.core.record(&doc, record).await.unwrap();
        let list = env
            .core
            .create_worklist(&doc, env.org, "Ward 3", None)
            .await
            .unwrap();
        assert!(env
            .core
            .add_to_worklist(&doc, env.org, list, record)
            .await
            .unwrap());
        assert!(env
            .core
            .add_to_worklist(&doc, env.org, list, kept)
            .await
            .unwrap());
        // Adding twice keeps one row.
        assert!(!env
            .core
            .add_to_worklist(&doc, env.org, list, kept)
            .await
            .unwrap());
        let before = env.core.worklist(&doc, env.org, list).unwrap();
        assert_eq!(before.people.len(), 2);
        assert!(before.people.iter().all(|p| p.seen.is_some()));

        env.core.revoke_grant(&owner, record, grant).await.unwrap();

        let recent = env.core.recent_records(&doc, env.org).unwrap();
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].patient, record);
        assert_eq!(recent[0].seen, None, "access has ended: no identity");
        let after = env.core.worklist(&doc, env.org, list).unwrap();
        let gone = after.people.iter().find(|p| p.patient == record).unwrap();
        assert_eq!(gone.seen, None);
        let still = after.people.iter().find(|p| p.patient == kept).unwrap();
        assert_eq!(still.seen.as_ref().unwrap().name, "Pat Kept");

        // Cannot be added again, nor offered; can be removed.
        assert!(matches!(
            env.core.add_to_worklist(&doc, env.org, list, record).await,
            Err(DomainError::NotFound)
        ));
        assert!(matches!(
            env.core.worklist_choices(&doc, env.org, record),
            Err(DomainError::NotFound)
        ));
        env.core
            .remove_from_worklist(&doc, env.org, list, record)
            .await
            .unwrap();
        let people = env.core.worklist(&doc, env.org, list).unwrap().people;
        assert_eq!(people.len(), 1);
        assert_eq!(people[0].patient, kept);

        // Someone who never shared cannot be added, even to a new list.
        let stranger = env.patient(3, "Stranger").await.own_patient.unwrap();
        assert!(matches!(
            env.core
                .add_to_worklist(&doc, env.org, list, stranger)
                .await,
            Err(DomainError::NotFound)
        ));
        assert!(matches!(
            env.core
                .create_worklist(&doc, env.org, "Other", Some(stranger))
                .await,
            Err(DomainError::NotFound)
        ));
        assert_eq!(env.core.worklists(&doc, env.org).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn emergency_access_shows_a_person_only_while_it_lasts() {
        let env = Env::new().await;
        let doc = env.member("doc@riverside.test", StaffRole::Doctor).await;
        let unshared = env.patient(4, "Emergency").await.own_patient.unwrap();
        env.core
            .break_glass(
                &doc,
                env.org,
                unshared,
                "Unconscious in A&E, allergies needed",
            )
            .await
            .unwrap();
        env.core.record(&doc, unshared).await.unwrap();
        let recent = env.core.recent_records(&doc, env.org).unwrap();
        assert_eq!(recent[0].seen.as_ref().unwrap().name, "Pat Emergency");
        env.clock
            .advance(env.core.settings().break_glass_duration + Duration::minutes(1));
        let recent = env.core.recent_records(&doc, env.org).unwrap();
        assert_eq!(recent[0].seen, None);
    }

    #[tokio::test]
    async fn names_are_checked_unique_ignoring_case_and_lists_are_bounded() {
        let env = Env::new().await;
        let doc = env.member("doc@riverside.test", StaffRole::Doctor).await;
        let org = env.org;
        assert_eq!(
            invalid_field(env.core.create_worklist(&doc, org, "   ", None).await),
            "name"
        );
        let long = "x".repeat(MAX_WORKLIST_NAME_CHARS + 1);
        assert_eq!(
            invalid_field(env.core.create_worklist(&doc, org, &long, None).await),
            "name"
        );
        let ward = env
            .core
            .create_worklist(&doc, org, "  Ward 3  ", None)
            .await
            .unwrap();
        assert_eq!(env.core.worklist(&doc, org, ward).unwrap().name, "Ward 3");
        assert_eq!(
            invalid_field(env.core.create_worklist(&doc, org, "WARD 3", None).await),
            "name"
        );
        let clinic = env
            .core
            .create_worklist(&doc, org, "Clinic", None)
            .await
            .unwrap();
        // Renaming: to its own name in another case is fine; to another's is not.
        env.core
            .rename_worklist(&doc, org, ward, "ward 3")
            .await
            .unwrap();
        assert_eq!(
            invalid_field(env.core.rename_worklist(&doc, org, clinic, "Ward 3").await),
            "name"
        );
        assert_eq!(
            invalid_field(env.core.rename_worklist(&doc, org, clinic, "").await),
            "name"
        );
        env.core
            .rename_worklist(&doc, org, clinic, "Tuesday clinic")
            .await
            .unwrap();
        let names: Vec<String> = env
            .core
            .worklists(&doc, org)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["Tuesday clinic", "ward 3"]);

        // Another professional may use the same names; they see none of these.
        let nurse = env.member("nurse@riverside.test", StaffRole::Nurse).await;
        assert!(env.core.worklists(&nurse, org).unwrap().is_empty());
        assert!(matches!(
            env.core.worklist(&nurse, org, ward),
            Err(DomainError::NotFound)
        ));
        assert!(matches!(
            env.core.delete_worklist(&nurse, org, ward).await,
            Err(DomainError::NotFound)
        ));
        env.core
            .create_worklist(&nurse, org, "Ward 3", None)
            .await
            .unwrap();

        // Deleting frees the name.
        env.core.delete_worklist(&doc, org, ward).await.unwrap();
        assert!(matches!(
            env.core.worklist(&doc, org, ward),
            Err(DomainError::NotFound)
        ));
        assert!(matches!(
            env.core.delete_worklist(&doc, org, ward).await,
            Err(DomainError::NotFound)
        ));
        env.core
            .create_worklist(&doc, org, "Ward 3", None)
            .await
            .unwrap();

        // At most MAX_WORKLISTS.
        for n in env.core.worklists(&doc, org).unwrap().len()..MAX_WORKLISTS {
            env.core
                .create_worklist(&doc, org, &format!("List {n}"), None)
                .await
                .unwrap();
        }
        assert_eq!(
            invalid_field(env.core.create_worklist(&doc, org, "One more", None).await),
            "name"
        );
        assert_eq!(env.core.worklists(&doc, org).unwrap().len(), MAX_WORKLISTS);
    }

    #[tokio::test]
    async fn a_worklist_holds_at_most_five_hundred_people() {
        let env = Env::new().await;
        let doc = env.member("doc@riverside.test", StaffRole::Doctor).await;
        let list = env
            .core
            .create_worklist(&doc, env.org, "Everyone", None)
            .await
            .unwrap();
        let mut last = None;
        for n in 0..=MAX_PEOPLE_PER_WORKLIST as u32 {
            let (_, record, _) = env.shared_patient(n, &format!("P{n}")).await;
            if (n as usize) < MAX_PEOPLE_PER_WORKLIST {
                env.core
                    .add_to_worklist(&doc, env.org, list, record)
                    .await
                    .unwrap();
            }
            last = Some(record);
        }
        assert_eq!(
            invalid_field(
                env.core
                    .add_to_worklist(&doc, env.org, list, last.unwrap())
                    .await
            ),
            "worklist"
        );
        let summary = env.core.worklists(&doc, env.org).unwrap();
        assert_eq!(summary[0].people, MAX_PEOPLE_PER_WORKLIST);
    }

    #[tokio::test]
    async fn the_store_holds_no_name_and_rows_do_not_open_elsewhere() {
        let env = Env::new().await;
        let doc = env.member("doc@riverside.test", StaffRole::Doctor).await;
        let (_, record, _) = env.shared_patient(7, "Quixotic-Surname").await;
        env.core.record(&doc, record).await.unwrap();
        let list = env
            .core
            .create_worklist(&doc, env.org, "Zanzibar Ward Secret", Some(record))
            .await
            .unwrap();
        let rows = env.raw_rows();
        assert_eq!(rows.len(), 3);
        let digits = nhs(7).digits();
        let formatted = nhs(7).to_string();
        let id_text = record.to_string();
        for (key, value) in &rows {
            for needle in [
                "Quixotic".as_bytes(),
                b"Zanzibar",
                digits.as_bytes(),
                formatted.as_bytes(),
                id_text.as_bytes(),
                record.as_bytes(),
            ] {
                assert!(!contains(key, needle) && !contains(value, needle));
            }
        }

        // A worklist row copied under another list's key does not open.
        let other = env
            .core
            .create_worklist(&doc, env.org, "Other", None)
            .await
            .unwrap();
        let from = worklist_key(doc.account, env.org, list);
        let to = worklist_key(doc.account, env.org, other);
        let raw = env.core.store().get(WORKLISTS, &from).unwrap().unwrap();
        let mut batch = Batch::new();
        batch.put(WORKLISTS, to, raw);
        env.core.store().submit(batch).await.unwrap();
        assert!(matches!(
            env.core.worklist(&doc, env.org, other),
            Err(DomainError::Crypto(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn changes_at_the_same_time_are_all_kept() {
        let env = Env::new().await;
        let doc = env.member("doc@riverside.test", StaffRole::Doctor).await;
        let list = env
            .core
            .create_worklist(&doc, env.org, "Busy", None)
            .await
            .unwrap();
        let mut records = Vec::new();
        for n in 0..ATTEMPTS as u32 {
            records.push(env.shared_patient(n, &format!("P{n}")).await.1);
        }
        let tasks: Vec<_> = records
            .iter()
            .map(|record| {
                let (core, doc, org, record) = (env.core.clone(), doc.clone(), env.org, *record);
                tokio::spawn(async move {
                    core.add_to_worklist(&doc, org, list, record).await.unwrap();
                    core.record(&doc, record).await.unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let on_list = env.core.worklist(&doc, env.org, list).unwrap().people;
        assert_eq!(on_list.len(), records.len());
        assert_eq!(
            env.core.recent_records(&doc, env.org).unwrap().len(),
            records.len()
        );
    }

    #[test]
    fn worklist_ids_parse_or_are_not_found() {
        let id = WorklistId::new_random();
        assert_eq!(id.to_string().parse::<WorklistId>().unwrap(), id);
        assert!(matches!(
            "not-an-id".parse::<WorklistId>(),
            Err(DomainError::NotFound)
        ));
    }
}
