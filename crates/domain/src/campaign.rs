//! Campaigns: their state machine, audience, schedule (once or cron in a time zone), quiet
//! hours, and how template parameters are filled from a contact. Pure rules; the store and the
//! engine act on them.

use crate::{CampaignId, ContactId, FieldError, LinkId, SegmentId};
use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::{fmt, str::FromStr};

/// Where a campaign is. Moves (anything else is refused):
/// draft → scheduled (launch); scheduled → running (an occurrence starts);
/// running → scheduled (a recurring campaign's run finished) | completed | failed;
/// scheduled | running → paused; paused → scheduled | running (resume);
/// draft | scheduled | running | paused → cancelled. completed, cancelled, failed are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Draft,
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignAction {
    Launch,
    Start,
    /// A run finished; `more` when a later occurrence is scheduled.
    RunFinished {
        more: bool,
    },
    Pause,
    /// `running` when a run is still in progress.
    Resume {
        running: bool,
    },
    Cancel,
    Fail,
}

impl CampaignStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled | Self::Failed)
    }

    /// Only drafts and not-yet-started schedules may be edited.
    pub fn editable(self) -> bool {
        matches!(self, Self::Draft | Self::Scheduled)
    }

    /// Sending may be in progress: the campaign cannot be deleted.
    pub fn active(self) -> bool {
        matches!(self, Self::Running | Self::Paused)
    }

    pub fn apply(self, action: CampaignAction) -> Option<CampaignStatus> {
        use CampaignAction::*;
        use CampaignStatus::*;
        match (self, action) {
            (Draft, Launch) => Some(Scheduled),
            (Scheduled | Running, Start) => Some(Running),
            (Running, RunFinished { more: true }) => Some(Scheduled),
            (Running, RunFinished { more: false }) => Some(Completed),
            (Scheduled | Running, Pause) => Some(Paused),
            (Paused, Resume { running: true }) => Some(Running),
            (Paused, Resume { running: false }) => Some(Scheduled),
            (Draft | Scheduled | Running | Paused, Cancel) => Some(Cancelled),
            (Scheduled | Running | Paused, Fail) => Some(Failed),
            _ => None,
        }
    }
}

impl fmt::Display for CampaignStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CampaignStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "draft" => Self::Draft,
            "scheduled" => Self::Scheduled,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "completed" => Self::Completed,
            "cancelled" => Self::Cancelled,
            "failed" => Self::Failed,
            other => return Err(format!("unknown campaign status {other:?}")),
        })
    }
}

impl TryFrom<String> for CampaignStatus {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Which recipients of an earlier campaign a retargeting campaign aims at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetargetWho {
    Failed,
    NotDelivered,
    NotRead,
    NotReplied,
    Clicked,
    NotClicked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Retarget {
    #[schema(value_type = String)]
    pub campaign_id: CampaignId,
    pub who: RetargetWho,
}

/// Who a campaign goes to. Exactly one of the kinds is given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Audience {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub segment_id: Option<SegmentId>,
    /// Contacts with any of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub contact_ids: Vec<ContactId>,
    /// Every contact who opted in to marketing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_opted_in: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retarget: Option<Retarget>,
}

pub const MAX_EXPLICIT_CONTACTS: usize = 10_000;

impl Audience {
    pub fn check(mut self) -> Result<Self, FieldError> {
        let kinds = [
            self.segment_id.is_some(),
            !self.tags.is_empty(),
            !self.contact_ids.is_empty(),
            self.all_opted_in,
            self.retarget.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if kinds != 1 {
            return Err(FieldError::new(
                "audience",
                "give exactly one of segment_id, tags, contact_ids, all_opted_in or retarget",
            ));
        }
        if self.contact_ids.len() > MAX_EXPLICIT_CONTACTS {
            return Err(FieldError::new(
                "audience",
                format!(
                    "at most {MAX_EXPLICIT_CONTACTS} contact_ids; use a segment or tags for more"
                ),
            ));
        }
        self.tags = self
            .tags
            .iter()
            .map(|t| crate::contact::tag(t).map_err(|e| FieldError::new("audience", e.message)))
            .collect::<Result<_, _>>()?;
        self.tags.sort();
        self.tags.dedup();
        self.contact_ids.sort();
        self.contact_ids.dedup();
        Ok(self)
    }
}

/// When a campaign sends, as given by the user: nothing (now), `at`, or `cron` in `timezone`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScheduleInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// Five-field crontab, e.g. `0 9 * * MON`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// IANA zone such as `Asia/Kolkata`; UTC when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// A recurring campaign stops after this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub enum Schedule {
    Now,
    At(DateTime<Utc>),
    Recurring {
        cron: Box<croner::Cron>,
        tz: Tz,
        ends_at: Option<DateTime<Utc>>,
    },
}

fn timezone(raw: Option<&str>, field: &'static str) -> Result<Tz, FieldError> {
    match raw {
        None => Ok(Tz::UTC),
        Some(z) => z.parse::<Tz>().map_err(|_| {
            FieldError::new(
                field,
                format!("{z:?} is not an IANA time zone such as Asia/Kolkata"),
            )
        }),
    }
}

impl Schedule {
    pub fn parse(input: &ScheduleInput) -> Result<Self, FieldError> {
        let tz = timezone(input.timezone.as_deref(), "schedule")?;
        match (&input.at, &input.cron) {
            (Some(_), Some(_)) => Err(FieldError::new(
                "schedule",
                "give either at or cron, not both",
            )),
            (Some(at), None) => Ok(Schedule::At(*at)),
            (None, Some(expr)) => {
                if expr.split_whitespace().count() != 5 {
                    return Err(FieldError::new(
                        "schedule",
                        "cron must have five fields: minute hour day-of-month month day-of-week",
                    ));
                }
                let cron = croner::Cron::from_str(expr).map_err(|e| {
                    FieldError::new(
                        "schedule",
                        format!("{expr:?} is not a cron expression: {e}"),
                    )
                })?;
                Ok(Schedule::Recurring {
                    cron: Box::new(cron),
                    tz,
                    ends_at: input.ends_at,
                })
            }
            (None, None) => Ok(Schedule::Now),
        }
    }

    pub fn recurring(&self) -> bool {
        matches!(self, Schedule::Recurring { .. })
    }

    /// The first occurrence when launched at `now`.
    pub fn first(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Now => Some(now),
            Schedule::At(t) => Some((*t).max(now)),
            Schedule::Recurring { .. } => self.after(now),
        }
    }

    /// The next occurrence strictly after `t` (recurring schedules only).
    pub fn after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Schedule::Recurring { cron, tz, ends_at } = self else {
            return None;
        };
        let next = cron
            .find_next_occurrence(&t.with_timezone(tz), false)
            .ok()?
            .with_timezone(&Utc);
        match ends_at {
            Some(end) if next > *end => None,
            _ => Some(next),
        }
    }
}

/// No sending between `start` and `end` (local time in `timezone`; may wrap midnight).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuietHours {
    /// `HH:MM`
    pub start: String,
    /// `HH:MM`
    pub end: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Quiet {
    start: NaiveTime,
    end: NaiveTime,
    tz: Tz,
}

impl Quiet {
    pub fn parse(q: &QuietHours) -> Result<Self, FieldError> {
        let t = |s: &str| {
            NaiveTime::parse_from_str(s, "%H:%M")
                .map_err(|_| FieldError::new("quiet_hours", format!("{s:?} is not a time HH:MM")))
        };
        let (start, end) = (t(&q.start)?, t(&q.end)?);
        if start == end {
            return Err(FieldError::new("quiet_hours", "start and end must differ"));
        }
        Ok(Quiet {
            start,
            end,
            tz: timezone(q.timezone.as_deref(), "quiet_hours")?,
        })
    }

    /// When sending may resume, if `now` falls in quiet hours.
    pub fn resume_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&self.tz);
        let t = local.time();
        let inside = if self.start < self.end {
            t >= self.start && t < self.end
        } else {
            t >= self.start || t < self.end
        };
        if !inside {
            return None;
        }
        let mut day = local.date_naive();
        if t >= self.end {
            day = day.succ_opt()?;
        }
        let end = day.and_time(self.end);
        // A DST gap at `end`: take the earliest valid instant after it.
        let resolved = self.tz.from_local_datetime(&end).earliest().or_else(|| {
            self.tz
                .from_local_datetime(&(end + chrono::Duration::hours(1)))
                .earliest()
        })?;
        Some(resolved.with_timezone(&Utc))
    }
}

/// Where one template parameter's value comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ParamInput {
    /// `contact.name`, `contact.first_name`, `contact.phone`, `contact.email`,
    /// `contact.language` or `attributes.<key>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// A fixed value (instead of `source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Used when the source is empty for a contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// With `"source": "link"`: the smart link whose personal short URL each recipient gets
    /// (in a URL button, only the code: the template's URL ends in `/s/{{1}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub link_id: Option<LinkId>,
}

/// Values for a template's `{{n}}` placeholders, in order, per component.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Parameters {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header: Vec<ParamInput>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub body: Vec<ParamInput>,
    /// Dynamic URL buttons: the button's index and the value of its `{{1}}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<ButtonParam>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ButtonParam {
    pub index: u32,
    #[serde(flatten)]
    pub value: ParamInput,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Text(String),
    Name,
    FirstName,
    Phone,
    Email,
    Language,
    Attribute(String),
    /// A smart link: personal per recipient (filled by the engine, not from contact data).
    Link(LinkId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub source: Source,
    pub fallback: Option<String>,
}

/// What a parameter can be filled from.
pub struct ContactData<'a> {
    pub name: Option<&'a str>,
    pub phone: &'a str,
    pub email: Option<&'a str>,
    pub language: Option<&'a str>,
    pub attributes: &'a Value,
}

impl Param {
    pub fn parse(p: &ParamInput) -> Result<Self, FieldError> {
        let err = |m: String| FieldError::new("parameters", m);
        if p.link_id.is_some() && p.source.as_deref() != Some("link") {
            return Err(err("link_id goes with \"source\": \"link\"".into()));
        }
        let source = match (&p.source, &p.text) {
            (Some(_), Some(_)) => return Err(err("give source or text, not both".into())),
            (None, Some(t)) => Source::Text(t.clone()),
            (None, None) => return Err(err("each parameter needs a source or a text".into())),
            (Some(s), None) => match s.as_str() {
                "contact.name" => Source::Name,
                "contact.first_name" => Source::FirstName,
                "contact.phone" => Source::Phone,
                "contact.email" => Source::Email,
                "contact.language" => Source::Language,
                "link" => match p.link_id {
                    Some(id) => Source::Link(id),
                    None => return Err(err("\"source\": \"link\" needs a link_id".into())),
                },
                other => match other.strip_prefix("attributes.") {
                    Some(k)
                        if !k.is_empty()
                            && k.len() <= 64
                            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                    {
                        Source::Attribute(k.to_string())
                    }
                    _ => {
                        return Err(err(format!(
                            "unknown source {other:?} (contact.name, contact.first_name, contact.phone, contact.email, contact.language, attributes.<key>, link)"
                        )));
                    }
                },
            },
        };
        Ok(Param {
            source,
            fallback: p.fallback.clone().filter(|f| !f.trim().is_empty()),
        })
    }

    /// The value for one contact: its data, else the fallback, else `None` (cannot send).
    pub fn resolve(&self, c: &ContactData<'_>) -> Option<String> {
        let v = match &self.source {
            Source::Text(t) => Some(t.clone()),
            Source::Name => c.name.map(str::to_string),
            Source::FirstName => c
                .name
                .and_then(|n| n.split_whitespace().next())
                .map(str::to_string),
            Source::Phone => Some(c.phone.to_string()),
            Source::Email => c.email.map(str::to_string),
            Source::Language => c.language.map(str::to_string),
            // Personal per message: the engine fills it (see `Plan::render_personal`).
            Source::Link(_) => None,
            Source::Attribute(k) => match c.attributes.get(k) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(Value::Bool(b)) => Some(b.to_string()),
                _ => None,
            },
        };
        v.filter(|s| !s.trim().is_empty())
            .or_else(|| self.fallback.clone())
    }
}

/// Parsed parameters, ready to fill a template for each contact.
#[derive(Debug, Clone, Default)]
pub struct ParamPlan {
    pub header: Vec<Param>,
    pub body: Vec<Param>,
    pub buttons: Vec<(u32, Param)>,
}

impl ParamPlan {
    /// The smart links the parameters use, each once.
    pub fn link_ids(&self) -> Vec<LinkId> {
        let mut ids: Vec<LinkId> = self
            .header
            .iter()
            .chain(self.body.iter())
            .chain(self.buttons.iter().map(|(_, p)| p))
            .filter_map(|p| match p.source {
                Source::Link(id) => Some(id),
                _ => None,
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    pub fn parse(p: &Parameters) -> Result<Self, FieldError> {
        Ok(ParamPlan {
            header: p
                .header
                .iter()
                .map(Param::parse)
                .collect::<Result<_, _>>()?,
            body: p.body.iter().map(Param::parse).collect::<Result<_, _>>()?,
            buttons: p
                .buttons
                .iter()
                .map(|b| Param::parse(&b.value).map(|p| (b.index, p)))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// The template language a contact gets: theirs when that version is approved (exactly, or by
/// primary subtag: `en` matches `en_US`), else the campaign's default.
pub fn pick_language<'a>(
    contact: Option<&str>,
    approved: &'a [String],
    default: &'a str,
) -> &'a str {
    let Some(want) = contact.map(|l| l.replace('-', "_").to_lowercase()) else {
        return default;
    };
    if let Some(l) = approved.iter().find(|a| a.to_lowercase() == want) {
        return l;
    }
    let primary = want.split('_').next().unwrap_or_default();
    // Prefer the default when it shares the subtag (say en_US default, contact en_GB).
    if default.to_lowercase().split('_').next() == Some(primary) {
        return default;
    }
    approved
        .iter()
        .find(|a| a.to_lowercase().split('_').next() == Some(primary))
        .map(String::as_str)
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn state_machine_allows_only_the_documented_moves() {
        use CampaignAction::*;
        use CampaignStatus::*;
        assert_eq!(Draft.apply(Launch), Some(Scheduled));
        assert_eq!(Scheduled.apply(Start), Some(Running));
        assert_eq!(Running.apply(Pause), Some(Paused));
        assert_eq!(Paused.apply(Resume { running: true }), Some(Running));
        assert_eq!(Running.apply(RunFinished { more: false }), Some(Completed));
        assert_eq!(Running.apply(RunFinished { more: true }), Some(Scheduled));
        assert_eq!(Cancelled.apply(Cancel), None);
        assert_eq!(Completed.apply(Cancel), None);
        assert_eq!(Running.apply(Launch), None);
        assert_eq!(Draft.apply(Pause), None);
        assert_eq!(Paused.apply(Pause), None);
        assert_eq!(Completed.apply(Start), None);
        for s in [Completed, Cancelled, Failed] {
            assert!(s.is_final());
            assert!(!s.editable());
        }
    }

    #[test]
    fn audience_needs_exactly_one_kind() {
        assert!(Audience::default().check().is_err());
        let both = Audience {
            tags: vec!["vip".into()],
            all_opted_in: true,
            ..Default::default()
        };
        assert!(both.check().is_err());
        let tags = Audience {
            tags: vec![" VIP".into(), "vip".into()],
            ..Default::default()
        }
        .check()
        .unwrap();
        assert_eq!(tags.tags, vec!["vip".to_string()]);
    }

    #[test]
    fn cron_in_a_time_zone() {
        let s = Schedule::parse(&ScheduleInput {
            cron: Some("0 9 * * *".into()),
            timezone: Some("Asia/Kolkata".into()),
            ..Default::default()
        })
        .unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
        // 09:00 IST is 03:30 UTC.
        assert_eq!(
            s.first(now),
            Some(Utc.with_ymd_and_hms(2026, 11, 23, 3, 30, 0).unwrap())
        );
        assert_eq!(
            s.after(Utc.with_ymd_and_hms(2026, 11, 23, 3, 30, 0).unwrap()),
            Some(Utc.with_ymd_and_hms(2026, 11, 24, 3, 30, 0).unwrap())
        );
        assert!(
            Schedule::parse(&ScheduleInput {
                cron: Some("0 0 9 * * *".into()),
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            Schedule::parse(&ScheduleInput {
                cron: Some("0 9 * * *".into()),
                timezone: Some("Mars/Olympus".into()),
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn quiet_hours_wrap_midnight() {
        let q = Quiet::parse(&QuietHours {
            start: "21:00".into(),
            end: "09:00".into(),
            timezone: None,
        })
        .unwrap();
        let late = Utc.with_ymd_and_hms(2026, 11, 23, 22, 0, 0).unwrap();
        assert_eq!(
            q.resume_at(late),
            Some(Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap())
        );
        let early = Utc.with_ymd_and_hms(2026, 11, 23, 3, 0, 0).unwrap();
        assert_eq!(
            q.resume_at(early),
            Some(Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap())
        );
        assert_eq!(
            q.resume_at(Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()),
            None
        );
    }

    #[test]
    fn parameters_fall_back() {
        let p = Param::parse(&ParamInput {
            source: Some("contact.name".into()),
            fallback: Some("Customer".into()),
            ..Default::default()
        })
        .unwrap();
        let attrs = json!({"city": "Pune", "visits": 3});
        let c = ContactData {
            name: None,
            phone: "+919800000001",
            email: None,
            language: None,
            attributes: &attrs,
        };
        assert_eq!(p.resolve(&c).as_deref(), Some("Customer"));
        let city = Param::parse(&ParamInput {
            source: Some("attributes.city".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(city.resolve(&c).as_deref(), Some("Pune"));
        let missing = Param::parse(&ParamInput {
            source: Some("attributes.zip".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(missing.resolve(&c), None);
        assert!(
            Param::parse(&ParamInput {
                source: Some("contact.password".into()),
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn language_falls_back_to_default() {
        let approved = vec!["en_US".to_string(), "hi".to_string()];
        assert_eq!(pick_language(Some("hi"), &approved, "en_US"), "hi");
        assert_eq!(pick_language(Some("en"), &approved, "en_US"), "en_US");
        assert_eq!(pick_language(Some("ta"), &approved, "en_US"), "en_US");
        assert_eq!(pick_language(None, &approved, "en_US"), "en_US");
        assert_eq!(pick_language(Some("HI"), &approved, "en_US"), "hi");
    }
}
