//! Synthetic patients for demos, tests and benchmarks. Every value is made up:
//! NHS numbers come from the 999 range the NHS keeps for testing, phone numbers
//! from Ofcom's drama ranges, emails from the reserved `.test` domain.

use std::collections::HashSet;

use keyhold_storage::Batch;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use time::{Date, Duration, Month, Time};

use crate::audit::{AuditAction, AuditActor, AuditEvent, Outcome};
use crate::consent::{Grant, Grantee, Permissions, StaffRole};
use crate::documents::{DocumentKind, NewDocument};
use crate::identity::IdentityLevel;
use crate::record::{EmergencyContact, Gender};
use crate::upload::FileType;
use crate::{
    AccountId, Category, ContactDetails, ContactKind, Demographics, DomainError, Email, EntryKind,
    FirstAdministrator, GrantId, Keyhold, NewEntry, NhsNumber, OrgId, PatientId, Source,
};

const GIVEN: &[&str] = &[
    "Amelia",
    "Oliver",
    "Isabella",
    "Harrison",
    "Mohammed",
    "Charlotte",
    "Frederick",
    "Siobhan",
    "Gareth",
    "Eleanor",
    "Tobias",
    "Florence",
    "Rajesh",
    "Imogen",
    "Cameron",
    "Beatrice",
    "Lachlan",
    "Rosalind",
    "Desmond",
    "Yasmin",
    "Ignatius",
    "Marguerite",
    "Leopold",
    "Henrietta",
    "Winifred",
    "Aurelio",
    "Octavia",
    "Cornelius",
    "Anjali",
    "Temitope",
];
const FAMILY: &[&str] = &[
    "Ashworth",
    "Blackwood",
    "Carrington",
    "Delacroix",
    "Fairweather",
    "Greenhalgh",
    "Hollingsworth",
    "Kettleborough",
    "Lockwood",
    "Merriweather",
    "Northcott",
    "Pemberton",
    "Quarrington",
    "Rowntree",
    "Silverstone",
    "Thistlewood",
    "Underhill",
    "Whitmore",
    "Zabrowski",
    "Okonkwo",
    "Ramanathan",
    "Fitzgerald",
    "Castellano",
    "Abernethy",
    "Braithwaite",
];
const STREETS: &[&str] = &[
    "Juniper Crescent",
    "Larkspur Avenue",
    "Foxglove Lane",
    "Cobblestone Row",
    "Heronsgate Road",
    "Marigold Terrace",
    "Kingfisher Close",
    "Beechwood Drive",
    "Saxonbury Way",
    "Tamarisk Gardens",
];
const TOWNS: &[&str] = &[
    "Leeds",
    "Harrogate",
    "Wakefield",
    "Bradford",
    "Halifax",
    "Huddersfield",
];
const WORDS: &[&str] = &[
    "lantern", "harbour", "meadow", "copper", "thimble", "orchard", "velvet", "compass", "saffron",
    "quill", "pebble", "juniper",
];
const GP: &str = "Riverside Medical Practice";
const HOSPITAL: &str = "St Oswald's Hospital NHS Foundation Trust";
const MENTAL_HEALTH: &str = "Northbridge Community Mental Health Team";
const SOCIAL_CARE: &str = "Kingsmead Council Adult Social Care";
const SEXUAL_HEALTH: &str = "Kingsmead Sexual Health Clinic";

/// The plaintext values one seeded patient holds, for the identities file that
/// tests search the store for.
#[derive(Debug, Clone, Serialize)]
pub struct DemoIdentity {
    pub patient_id: PatientId,
    pub given_name: String,
    pub family_name: String,
    pub full_name: String,
    pub nhs_number: String,
    pub nhs_number_formatted: String,
    pub email: String,
    pub date_of_birth: String,
    pub address_line: String,
    pub postcode: String,
    pub phone: String,
    pub note_phrase: String,
}

/// A demo sign-in to print for a newcomer.
#[derive(Debug, Clone, Serialize)]
pub struct DemoAccount {
    pub email: String,
    pub password: String,
    pub who: String,
}

/// The password of every demo account. Demo data only; printed at start.
pub const DEMO_PASSWORD: &str = "keyhold-demo-2026";

/// The demo patient: a full record, shared with the GP practice and a carer.
pub const DEMO_PATIENT: &str = "patient@demo.keyhold.test";
/// A patient whose record is marked sensitive.
pub const DEMO_SENSITIVE: &str = "sensitive@demo.keyhold.test";
/// The administrator of the GP practice.
pub const DEMO_GP_ADMIN: &str = "gp-admin@demo.keyhold.test";
/// A doctor at the GP practice, which the demo patient shares with.
pub const DEMO_GP: &str = "gp@demo.keyhold.test";
/// A doctor at the hospital, which holds no grant.
pub const DEMO_DOCTOR: &str = "doctor@demo.keyhold.test";
/// A carer with no record of their own, whom the demo patient shares with.
pub const DEMO_CARER: &str = "carer@demo.keyhold.test";
/// A records officer at the GP practice: its subject access request queue.
pub const DEMO_RECORDS: &str = "records@demo.keyhold.test";
/// A records officer at the hospital, who sees none of the practice's requests.
pub const DEMO_HOSPITAL_RECORDS: &str = "records-hospital@demo.keyhold.test";
/// The demo's deceased patient (registered at the GP practice), for an
/// executor's request: name, NHS number and date of birth to type in.
pub const DEMO_DECEASED_NAME: (&str, &str) = ("Arthur", "Hughes");
pub const DEMO_DECEASED_NHS_NUMBER: &str = "9990000026";
pub const DEMO_DECEASED_BORN: (u8, u8, i32) = (14, 3, 1941);
/// The synthetic NHS number of the demo record that NHS login's test users
/// (tests/idp/users.json: `p9` and `p5`) sign in to. No account owns it until
/// one of them does.
pub const DEMO_NHS_LOGIN_NHS_NUMBER: &str = "9990000018";

/// Every demo sign-in, in the order `seed_demo` returns them.
pub const DEMO_EMAILS: [&str; 8] = [
    DEMO_PATIENT,
    DEMO_SENSITIVE,
    DEMO_GP_ADMIN,
    DEMO_GP,
    DEMO_DOCTOR,
    DEMO_CARER,
    DEMO_RECORDS,
    DEMO_HOSPITAL_RECORDS,
];

/// Makes people: unique NHS numbers, plausible everything else.
pub struct Generator<R: Rng> {
    rng: R,
    used_nhs: HashSet<String>,
    counter: u32,
}

fn pick<'a, R: Rng>(rng: &mut R, from: &'a [&'a str]) -> &'a str {
    from.choose(rng).copied().unwrap_or("")
}

impl<R: Rng> Generator<R> {
    pub fn new(rng: R) -> Self {
        Generator {
            rng,
            used_nhs: HashSet::new(),
            counter: 0,
        }
    }

    fn nhs_number(&mut self) -> Result<NhsNumber, DomainError> {
        for _ in 0..10_000 {
            let mut nine = [9u8, 9, 9, 0, 0, 0, 0, 0, 0];
            for d in nine.iter_mut().skip(3) {
                *d = self.rng.gen_range(0..10);
            }
            if let Some(n) = NhsNumber::from_nine(nine) {
                if self.used_nhs.insert(n.digits()) {
                    return Ok(n);
                }
            }
        }
        Err(DomainError::Internal("ran out of test NHS numbers".into()))
    }

    fn date(&mut self, from_year: i32, to_year: i32) -> Date {
        let year = self.rng.gen_range(from_year..=to_year);
        let month = Month::try_from(self.rng.gen_range(1..=12u8)).unwrap_or(Month::January);
        let day = self.rng.gen_range(1..=28u8);
        Date::from_calendar_date(year, month, day).unwrap_or(Date::MIN)
    }

    /// One synthetic person's demographics and identity values.
    pub fn person(&mut self) -> Result<(Demographics, DemoIdentity), DomainError> {
        self.counter += 1;
        let given = pick(&mut self.rng, GIVEN).to_string();
        let family = pick(&mut self.rng, FAMILY).to_string();
        let nhs = self.nhs_number()?;
        let dob = self.date(1936, 2019);
        let email_text = format!(
            "{}.{}.{}{}@example.test",
            given.to_lowercase(),
            family.to_lowercase(),
            self.counter,
            self.rng.gen_range(100..1000)
        );
        let email = Email::parse(&email_text).map_err(|e| DomainError::Internal(e.to_string()))?;
        let address_line = format!(
            "{} {}",
            self.rng.gen_range(2..240),
            pick(&mut self.rng, STREETS)
        );
        let town = pick(&mut self.rng, TOWNS).to_string();
        let letters = b"ABDEFGHJLNPQRSTUWXYZ";
        let postcode = format!(
            "LS{} {}{}{}",
            self.rng.gen_range(1..30),
            self.rng.gen_range(1..10),
            char::from(letters[self.rng.gen_range(0..letters.len())]),
            char::from(letters[self.rng.gen_range(0..letters.len())]),
        );
        let phone = format!("07700 900{:03}", self.rng.gen_range(0..1000));
        let note_phrase = format!(
            "please remember my {} {} when booking, reference {:06}",
            pick(&mut self.rng, WORDS),
            pick(&mut self.rng, WORDS),
            self.rng.gen_range(0..1_000_000)
        );
        let gender = [Gender::Female, Gender::Male, Gender::Other][self.rng.gen_range(0..3)];
        let d = Demographics {
            given_name: given.clone(),
            family_name: family.clone(),
            date_of_birth: Some(dob),
            gender,
            nhs_number: Some(nhs),
            address_lines: vec![address_line.clone(), town],
            postcode: postcode.clone(),
            phones: vec![phone.clone()],
            email: Some(email),
            gp_practice: GP.into(),
            ethnicity: pick(
                &mut self.rng,
                &[
                    "White British",
                    "Indian",
                    "Black African",
                    "Mixed",
                    "Pakistani",
                    "Irish",
                ],
            )
            .into(),
            languages: vec!["English".into()],
            interpreter_needed: false,
            religion: pick(
                &mut self.rng,
                &["None", "Christian", "Muslim", "Hindu", "Sikh", "Jewish"],
            )
            .into(),
            marital_status: pick(
                &mut self.rng,
                &["Single", "Married", "Civil partnership", "Widowed"],
            )
            .into(),
            disabilities: Vec::new(),
            lives_alone: Some(self.rng.gen_bool(0.3)),
            aliases: Vec::new(),
            emergency_contacts: vec![EmergencyContact {
                name: format!("{} {}", pick(&mut self.rng, GIVEN), family),
                relationship: pick(
                    &mut self.rng,
                    &["Partner", "Daughter", "Son", "Sister", "Friend"],
                )
                .into(),
                phone: format!("07700 900{:03}", self.rng.gen_range(0..1000)),
            }],
            date_of_death: None,
            sensitive: false,
        };
        let identity = DemoIdentity {
            patient_id: PatientId::new_random(), // replaced once stored
            full_name: format!("{given} {family}"),
            given_name: given,
            family_name: family,
            nhs_number: nhs.digits(),
            nhs_number_formatted: nhs.to_string(),
            email: email_text,
            date_of_birth: dob.to_string(),
            address_line,
            postcode,
            phone,
            note_phrase,
        };
        Ok((d, identity))
    }

    /// A varied set of entries from several organisations, across categories.
    pub fn entries(&mut self, today: Date, note_phrase: &str) -> Vec<(NewEntry, Source)> {
        let org = |n: &str| Source::Organisation {
            name: n.into(),
            org: None,
        };
        let past = |rng: &mut R, max_days: i64| today - Duration::days(rng.gen_range(7..max_days));
        let mut out = Vec::new();
        let mut add = |kind, title: &str, date, category, details: &str, source: Source| {
            out.push((
                NewEntry {
                    kind,
                    title: title.into(),
                    date,
                    end_date: None,
                    category,
                    details: details.into(),
                },
                source,
            ));
        };
        let r = &mut self.rng;
        let allergy = pick(
            r,
            &[
                "Penicillin",
                "Peanuts",
                "Latex",
                "Aspirin",
                "House dust mite",
            ],
        );
        add(
            EntryKind::Allergy,
            allergy,
            past(r, 4000),
            Category::General,
            "Reaction: rash and swelling. Severity: moderate.",
            org(GP),
        );
        let meds = [
            "Amlodipine 5 mg tablets",
            "Salbutamol 100 micrograms inhaler",
            "Metformin 500 mg tablets",
            "Sertraline 50 mg tablets",
        ];
        let med = meds[r.gen_range(0..3)];
        add(
            EntryKind::Medication,
            med,
            past(r, 900),
            Category::General,
            "Take as directed. Repeat prescription.",
            org(GP),
        );
        add(
            EntryKind::Immunisation,
            pick(
                r,
                &[
                    "Influenza vaccine",
                    "COVID-19 booster",
                    "Tetanus, diphtheria and polio",
                ],
            ),
            past(r, 700),
            Category::General,
            "Given in the left upper arm.",
            org(GP),
        );
        add(
            EntryKind::Condition,
            pick(
                r,
                &[
                    "Asthma",
                    "Hypertension",
                    "Type 2 diabetes",
                    "Osteoarthritis of knee",
                ],
            ),
            past(r, 6000),
            Category::General,
            "Diagnosed and managed in primary care.",
            org(GP),
        );
        add(
            EntryKind::Encounter,
            "GP consultation",
            past(r, 200),
            Category::General,
            "Reviewed symptoms and medication. Follow up in 3 months.",
            org(GP),
        );
        add(
            EntryKind::Encounter,
            "Emergency department attendance",
            past(r, 1500),
            Category::General,
            "Seen and discharged the same day.",
            org(HOSPITAL),
        );
        add(
            EntryKind::Appointment,
            "Outpatient follow-up",
            today + Duration::days(r.gen_range(3..90)),
            Category::General,
            "Clinic 4, level 2. Please arrive 10 minutes early.",
            org(HOSPITAL),
        );
        add(
            EntryKind::Appointment,
            "Annual review",
            past(r, 300),
            Category::General,
            "Attended.",
            org(GP),
        );
        add(
            EntryKind::CareContact,
            "Dr Imran Haque (GP)",
            past(r, 3000),
            Category::General,
            "Riverside Medical Practice, 0113 496 0123",
            org(GP),
        );
        add(
            EntryKind::QuestionnaireResponse,
            "PHQ-9 depression score",
            past(r, 120),
            Category::MentalHealth,
            "Score 7 of 27: mild.",
            org(MENTAL_HEALTH),
        );
        add(
            EntryKind::Encounter,
            "Community mental health review",
            past(r, 150),
            Category::MentalHealth,
            "Mood improving; continue current plan.",
            org(MENTAL_HEALTH),
        );
        add(
            EntryKind::Encounter,
            "Care needs assessment",
            past(r, 400),
            Category::SocialCare,
            "Eligible for two visits a day.",
            org(SOCIAL_CARE),
        );
        if r.gen_bool(0.3) {
            add(
                EntryKind::Encounter,
                "Sexual health screening",
                past(r, 500),
                Category::SexualHealth,
                "Routine screen; results normal.",
                org(SEXUAL_HEALTH),
            );
        }
        if r.gen_bool(0.2) {
            add(
                EntryKind::Condition,
                "Restricted entry",
                past(r, 800),
                Category::Restricted,
                "Held at the patient's request.",
                org(HOSPITAL),
            );
        }
        add(
            EntryKind::Note,
            "Note for my care team",
            past(r, 60),
            Category::General,
            note_phrase,
            Source::PatientEntered,
        );
        // Fixed dates (no draw from the generator, so the people seeded after
        // this one stay as they were): running now, with a review to come.
        out.push((
            NewEntry {
                kind: EntryKind::CarePlan,
                title: "Care and support plan".into(),
                date: today - Duration::days(60),
                end_date: Some(today + Duration::days(120)),
                category: Category::SocialCare,
                details: "Two home care visits a day for help with washing, dressing and meals. \
                          Review in six months."
                    .into(),
            },
            org(SOCIAL_CARE),
        ));
        out
    }
}

/// The rest of a demo person's care network (fixed: no draw from the
/// generator): a community nurse and someone in their life.
fn care_network() -> Vec<(&'static str, ContactDetails, Source)> {
    vec![
        (
            "Grace Adeyemi",
            ContactDetails {
                kind: ContactKind::Professional,
                role: "District nurse".into(),
                organisation: "Leeds Community Nursing Team".into(),
                phone: "0113 496 0456".into(),
                email: Email::parse("district.nurses@community.example").ok(),
            },
            Source::Organisation {
                name: SOCIAL_CARE.into(),
                org: None,
            },
        ),
        (
            "Alex Morgan",
            ContactDetails {
                kind: ContactKind::Personal,
                role: "Neighbour, has a spare key".into(),
                organisation: String::new(),
                phone: "07700 900 123".into(),
                email: None,
            },
            Source::PatientEntered,
        ),
    ]
}

/// A PDF of the given lines: the first is its title (see `access_requests::pdf`).
pub fn simple_pdf(lines: &[&str]) -> Vec<u8> {
    use crate::access_requests::pdf::{render, TextDocument};
    let (title, rest) = lines.split_first().unwrap_or((&"", &[]));
    render(&TextDocument {
        title: (*title).to_string(),
        intro: rest.iter().map(|l| l.to_string()).collect(),
        sections: Vec::new(),
        footer: "Synthetic demo data".into(),
    })
}

impl Keyhold {
    /// Stores one synthetic patient with entries and a discharge letter, in one
    /// atomic, audited write.
    pub async fn seed_patient<R: Rng>(
        &self,
        gen: &mut Generator<R>,
        demographics: Demographics,
        identity: &mut DemoIdentity,
    ) -> Result<PatientId, DomainError> {
        self.seed_patient_of(gen, demographics, identity, None)
            .await
    }

    /// As `seed_patient`; with `gp` set, the GP practice's entries name that
    /// Keyhold organisation as their contributor.
    async fn seed_patient_of<R: Rng>(
        &self,
        gen: &mut Generator<R>,
        demographics: Demographics,
        identity: &mut DemoIdentity,
        gp: Option<OrgId>,
    ) -> Result<PatientId, DomainError> {
        let today = self.clock.now().date();
        let mut batch = Batch::new();
        let patient = self.new_patient(&mut batch, &demographics)?;
        identity.patient_id = patient;
        for (mut entry, mut source) in gen.entries(today, &identity.note_phrase) {
            if let (Some(gp), Source::Organisation { name, org }) = (gp, &mut source) {
                if name == GP {
                    *org = Some(gp);
                }
            }
            // The generated GP contact, with its role and number as fields.
            let contact = (entry.kind == EntryKind::CareContact).then(|| {
                entry.title = "Dr Imran Haque".into();
                entry.details = String::new();
                ContactDetails {
                    kind: ContactKind::Professional,
                    role: "GP".into(),
                    organisation: GP.into(),
                    phone: "0113 496 0123".into(),
                    email: None,
                }
            });
            self.entry_with_contact_into(&mut batch, patient, entry, source, contact)?;
        }
        for (name, contact, source) in care_network() {
            let new = NewEntry {
                kind: EntryKind::CareContact,
                title: name.into(),
                date: today - Duration::days(400),
                end_date: None,
                category: Category::General,
                details: String::new(),
            };
            self.entry_with_contact_into(&mut batch, patient, new, source, Some(contact))?;
        }
        let letter = simple_pdf(&[
            "St Oswald's Hospital NHS Foundation Trust - Discharge summary (synthetic)",
            "Admitted with shortness of breath; treated and discharged home.",
            "Follow up with your GP in two weeks.",
        ]);
        self.document_into(
            &mut batch,
            patient,
            NewDocument {
                title: "Discharge summary".into(),
                kind: DocumentKind::DischargeSummary,
                category: Category::General,
                filename: "discharge-summary.pdf".into(),
                bytes: letter,
            },
            FileType::Pdf,
            Source::Organisation {
                name: HOSPITAL.into(),
                org: None,
            },
        )?;
        self.audit.add(
            &mut batch,
            &AuditEvent {
                at: self.clock.now(),
                actor: AuditActor::operator(),
                action: AuditAction::Create,
                patient: Some(patient),
                resource: "record".into(),
                purpose: "seed synthetic demo data".into(),
                outcome: Outcome::Success,
                basis: None,
            },
        )?;
        self.store.submit(batch).await?;
        Ok(patient)
    }

    /// Seeds `n` synthetic patients; returns what was seeded, in plaintext, for
    /// the caller to write outside the data folder.
    pub async fn seed_patients(&self, n: usize) -> Result<Vec<DemoIdentity>, DomainError> {
        let mut gen = Generator::new(rand::rngs::StdRng::from_entropy());
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let (d, mut identity) = gen.person()?;
            self.seed_patient(&mut gen, d, &mut identity).await?;
            out.push(identity);
        }
        Ok(out)
    }

    /// The `serve --demo` data set: two organisations with their people, a
    /// handful of patients, and the demo patient's sharing, so a newcomer can
    /// sign in on every side of consent. Runs on an empty store only.
    pub async fn seed_demo(&self) -> Result<Vec<DemoAccount>, DomainError> {
        let listed = |email: &str, who: &str| DemoAccount {
            email: email.into(),
            password: DEMO_PASSWORD.into(),
            who: who.into(),
        };
        let mut people = Vec::new();
        let gp_admin = self
            .create_account_for("Priya Shah", DEMO_GP_ADMIN, DEMO_PASSWORD, None)
            .await?;
        people.push(listed(
            DEMO_GP_ADMIN,
            "an administrator at Riverside Medical Practice: staff, proxies, emergency-access report",
        ));
        let gp = self
            .create_account_for("Dr Imran Haque", DEMO_GP, DEMO_PASSWORD, None)
            .await?;
        people.push(listed(
            DEMO_GP,
            "a GP at Riverside Medical Practice, which the demo patient shares with",
        ));
        let doctor = self
            .create_account_for("Dr Tom Okafor", DEMO_DOCTOR, DEMO_PASSWORD, None)
            .await?;
        people.push(listed(
            DEMO_DOCTOR,
            "a hospital doctor with no sharing: try emergency access",
        ));
        let carer = self
            .create_account_for("Sam Reid", DEMO_CARER, DEMO_PASSWORD, None)
            .await?;
        people.push(listed(
            DEMO_CARER,
            "a carer the demo patient shares General and Social care with",
        ));

        let records = self
            .create_account_for("Jo Bennett", DEMO_RECORDS, DEMO_PASSWORD, None)
            .await?;
        people.push(listed(
            DEMO_RECORDS,
            "a records officer at Riverside Medical Practice: subject access requests",
        ));
        let hospital_records = self
            .create_account_for("Lee Carter", DEMO_HOSPITAL_RECORDS, DEMO_PASSWORD, None)
            .await?;
        people.push(listed(
            DEMO_HOSPITAL_RECORDS,
            "a records officer at the hospital: sees only the hospital's requests",
        ));

        let riverside = self.seed_organisation(GP, DEMO_GP_ADMIN, gp_admin).await?;
        self.add_member(riverside, records, StaffRole::RecordsOfficer)
            .await?;
        self.add_member(riverside, gp, StaffRole::Doctor).await?;
        // The operator names a first administrator; the hospital's only demo
        // person is its doctor, so the doctor's role replaces that one.
        let hospital = self
            .seed_organisation(HOSPITAL, DEMO_DOCTOR, doctor)
            .await?;
        self.add_member(hospital, doctor, StaffRole::Doctor).await?;
        self.add_member(hospital, hospital_records, StaffRole::RecordsOfficer)
            .await?;

        let mut gen = Generator::new(rand::rngs::StdRng::from_entropy());
        gen.used_nhs.insert(DEMO_NHS_LOGIN_NHS_NUMBER.into());
        gen.used_nhs.insert(DEMO_DECEASED_NHS_NUMBER.into());
        let nhs_login_number = NhsNumber::parse(DEMO_NHS_LOGIN_NHS_NUMBER)
            .map_err(|e| DomainError::Internal(format!("demo NHS number: {e}")))?;
        let mut accounts = Vec::new();
        let mut demo_patient = None;
        for i in 0..8 {
            let (mut d, mut identity) = gen.person()?;
            if i == 3 {
                d.nhs_number = Some(nhs_login_number);
                identity.nhs_number = nhs_login_number.digits();
                identity.nhs_number_formatted = nhs_login_number.to_string();
            }
            let login = match i {
                0 => Some((DEMO_PATIENT, "a patient with a full record")),
                1 => Some((DEMO_SENSITIVE, "a patient whose record is marked sensitive")),
                _ => None,
            };
            if i == 1 {
                d.sensitive = true;
            }
            if i == 2 {
                let (given, family) = DEMO_DECEASED_NAME;
                let (day, month, year) = DEMO_DECEASED_BORN;
                let nhs = NhsNumber::parse(DEMO_DECEASED_NHS_NUMBER)
                    .map_err(|e| DomainError::Internal(format!("demo NHS number: {e}")))?;
                d.given_name = given.into();
                d.family_name = family.into();
                d.nhs_number = Some(nhs);
                d.date_of_birth = time::Month::try_from(month)
                    .ok()
                    .and_then(|m| time::Date::from_calendar_date(year, m, day).ok());
                d.date_of_death = Some(self.clock.now().date() - Duration::days(200));
                identity.given_name = given.into();
                identity.family_name = family.into();
                identity.nhs_number = nhs.digits();
                identity.nhs_number_formatted = nhs.to_string();
                identity.full_name = d.full_name();
                if let Some(dob) = d.date_of_birth {
                    identity.date_of_birth = dob.to_string();
                }
            }
            if let Some((email, _)) = login {
                d.email = Email::parse(email).ok();
            }
            let name = d.full_name();
            let nhs = d.nhs_number;
            // The deceased patient's practice holds records an executor can ask for.
            let gp_org = (i == 0 || i == 2).then_some(riverside);
            let patient = self
                .seed_patient_of(&mut gen, d, &mut identity, gp_org)
                .await?;
            if let Some((email, who)) = login {
                let account = self
                    .create_account_for(&name, email, DEMO_PASSWORD, Some(patient))
                    .await?;
                // Their identity was checked, so they see the whole record.
                self.verify_identity(
                    &Email::parse(email)
                        .map_err(|e| DomainError::Internal(format!("demo email: {e}")))?,
                    IdentityLevel::P9,
                    nhs,
                    "synthetic demo patient",
                )
                .await?;
                if i == 0 {
                    demo_patient = Some((patient, account));
                }
                accounts.push(DemoAccount {
                    email: email.into(),
                    password: DEMO_PASSWORD.into(),
                    who: who.into(),
                });
            }
        }
        let (patient, patient_account) = demo_patient
            .ok_or_else(|| DomainError::Internal("the demo patient was not seeded".into()))?;

        let now = self.clock.now();
        let ends = (now.date() + Duration::days(366))
            .with_time(Time::MIDNIGHT)
            .assume_utc();
        let grant = |grantee, permissions, categories: &[Category], purpose: &str| Grant {
            id: GrantId::new_random(),
            patient,
            grantee,
            permissions,
            categories: categories.iter().copied().collect(),
            starts: now,
            ends,
            purpose: purpose.into(),
            created_by: patient_account,
            created_at: now,
            proxy: None,
            revoked_at: None,
            version: 1,
        };
        self.seed_grant(grant(
            Grantee::Organisation { org: riverside },
            Permissions {
                read: true,
                contribute: true,
                act_on_behalf: false,
            },
            &[Category::General, Category::MentalHealth],
            "My GP practice",
        ))
        .await?;
        self.seed_grant(grant(
            Grantee::Account { account: carer },
            Permissions {
                read: true,
                contribute: false,
                act_on_behalf: false,
            },
            &[Category::General, Category::SocialCare],
            "Helps me with appointments and medicines",
        ))
        .await?;

        accounts.extend(people);
        Ok(accounts)
    }

    /// Creates an organisation whose first administrator already has an account.
    async fn seed_organisation(
        &self,
        name: &str,
        admin_email: &str,
        admin: AccountId,
    ) -> Result<OrgId, DomainError> {
        match self.create_organisation(name, admin_email).await? {
            (org, FirstAdministrator::Existing(a)) if a == admin => Ok(org),
            _ => Err(DomainError::Internal(format!(
                "demo: {admin_email} did not become the first administrator of {name}"
            ))),
        }
    }

    /// True when nothing (no patient, account or organisation) is stored yet:
    /// only then does `serve --demo` seed.
    pub fn is_empty(&self) -> Result<bool, DomainError> {
        // Accounts and organisations too: the demo writes them before any
        // patient, and a run cut short there must not be seeded over.
        use crate::trees::{ACCOUNTS, ORGS, PATIENTS};
        Ok([PATIENTS, ACCOUNTS, ORGS]
            .into_iter()
            .all(|t| self.store.scan(t, b"").next().is_none()))
    }
}
