//! The webhook emitter: events are scheduled with a due time, gathered when due into batched
//! POSTs (statuses and inbound messages of one number share a change; up to `batch_size` events
//! per POST), signed with the app secret over the exact bytes sent, and retried with back-off
//! when the receiver does not answer 2xx, as Meta does.

use pinglayer_whatsapp::webhook::{
    self, Change, Contact, Entry, InboundMessage, MessagesValue, Metadata, Payload, Status,
};
use serde_json::Value;
use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};
use tokio::{sync::mpsc, time::Instant};

use crate::config::SandboxConfig;

#[derive(Debug, Clone)]
pub enum Outgoing {
    Status {
        waba: String,
        pnid: String,
        display: String,
        status: Status,
    },
    Inbound {
        waba: String,
        pnid: String,
        display: String,
        contact: Contact,
        message: Box<InboundMessage>,
    },
    Template {
        waba: String,
        value: Value,
    },
}

pub struct Scheduled {
    pub due: Instant,
    pub event: Outgoing,
}

#[derive(Clone)]
pub struct Queue {
    tx: mpsc::UnboundedSender<Scheduled>,
    counters: Arc<crate::state::Stats>,
    url: Arc<std::sync::RwLock<Option<String>>>,
}

impl Queue {
    pub fn push(&self, after: Duration, event: Outgoing) {
        let _ = self.tx.send(Scheduled {
            due: Instant::now() + after,
            event,
        });
    }
    pub fn stats(&self) -> &crate::state::Stats {
        &self.counters
    }
    /// Where webhooks go from now on.
    pub fn set_url(&self, url: Option<String>) {
        *self.url.write().expect("url poisoned") = url;
    }
}

pub struct Emitter {
    rx: mpsc::UnboundedReceiver<Scheduled>,
    url: Arc<std::sync::RwLock<Option<String>>>,
    secret: Vec<u8>,
    batch: usize,
    reorder: bool,
    http: reqwest::Client,
    counters: Arc<crate::state::Stats>,
}

impl Emitter {
    pub fn new(cfg: &SandboxConfig) -> (Self, Queue) {
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(crate::state::Stats::default());
        let url = Arc::new(std::sync::RwLock::new(cfg.webhook_url.clone()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .build()
            .expect("http client");
        (
            Self {
                rx,
                url: url.clone(),
                secret: cfg.app_secret.as_bytes().to_vec(),
                batch: cfg.batch_size.max(1),
                reorder: cfg.reorder,
                http,
                counters: counters.clone(),
            },
            Queue { tx, counters, url },
        )
    }

    pub async fn run(mut self) {
        let mut heap: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
        let mut pending: BTreeMap<u64, Outgoing> = BTreeMap::new();
        let mut seq = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        loop {
            tokio::select! {
                got = self.rx.recv() => match got {
                    Some(s) => { seq += 1; heap.push(Reverse((s.due, seq))); pending.insert(seq, s.event); }
                    None => return,
                },
                _ = tick.tick() => {}
            }
            while let Ok(s) = self.rx.try_recv() {
                seq += 1;
                heap.push(Reverse((s.due, seq)));
                pending.insert(seq, s.event);
            }
            let now = Instant::now();
            let mut due = Vec::new();
            while heap.peek().is_some_and(|Reverse((t, _))| *t <= now) {
                let Reverse((_, id)) = heap.pop().expect("peeked");
                if let Some(e) = pending.remove(&id) {
                    due.push(e);
                }
            }
            if due.is_empty() {
                continue;
            }
            if self.reorder {
                due.reverse();
            }
            for chunk in due.chunks(self.batch) {
                let payload = build_payload(chunk);
                self.post(payload, chunk.len() as u64);
            }
        }
    }

    fn post(&self, payload: Payload, events: u64) {
        let Some(url) = self.url.read().expect("url poisoned").clone() else {
            return;
        };
        let body = serde_json::to_vec(&payload).expect("payloads serialise");
        let sig = webhook::sign(&self.secret, &body);
        let http = self.http.clone();
        let counters = self.counters.clone();
        tokio::spawn(async move {
            // Meta retries undelivered webhooks with back-off (for days); a few tries suffice here.
            for attempt in 0..6u32 {
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-hub-signature-256", &sig)
                    .body(body.clone())
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status().is_success() => {
                        counters.webhooks_posted.fetch_add(1, Ordering::Relaxed);
                        counters.webhook_events.fetch_add(events, Ordering::Relaxed);
                        return;
                    }
                    _ => {
                        counters.webhook_failures.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
                    }
                }
            }
            tracing::warn!("sandbox gave up posting a webhook after retries");
        });
    }
}

/// Groups events into entries (per WABA) and `messages` changes (per number).
pub fn build_payload(events: &[Outgoing]) -> Payload {
    let mut entries: BTreeMap<String, Vec<Change>> = BTreeMap::new();
    let mut values: BTreeMap<(String, String), MessagesValue> = BTreeMap::new();
    for e in events {
        match e {
            Outgoing::Status {
                waba,
                pnid,
                display,
                status,
            } => {
                value_for(&mut values, waba, pnid, display)
                    .statuses
                    .push(status.clone());
            }
            Outgoing::Inbound {
                waba,
                pnid,
                display,
                contact,
                message,
            } => {
                let v = value_for(&mut values, waba, pnid, display);
                v.contacts.push(contact.clone());
                v.messages.push((**message).clone());
            }
            Outgoing::Template { waba, value } => {
                entries.entry(waba.clone()).or_default().push(Change {
                    field: "message_template_status_update".into(),
                    value: value.clone(),
                })
            }
        }
    }
    for ((waba, _), v) in values {
        entries.entry(waba).or_default().push(Change {
            field: "messages".into(),
            value: serde_json::to_value(v).expect("serialises"),
        });
    }
    Payload {
        object: "whatsapp_business_account".into(),
        entry: entries
            .into_iter()
            .map(|(id, changes)| Entry { id, changes })
            .collect(),
    }
}

fn value_for<'a>(
    values: &'a mut BTreeMap<(String, String), MessagesValue>,
    waba: &str,
    pnid: &str,
    display: &str,
) -> &'a mut MessagesValue {
    values
        .entry((waba.to_string(), pnid.to_string()))
        .or_insert_with(|| MessagesValue {
            messaging_product: Some("whatsapp".into()),
            metadata: Metadata {
                display_phone_number: display.chars().filter(|c| c.is_ascii_digit()).collect(),
                phone_number_id: pnid.to_string(),
            },
            ..Default::default()
        })
}
