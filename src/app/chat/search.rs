//! Message search in the sidebar: the "Search messages" box, its results
//! (sender, a snippet around the match, time; "More results" pages on), and
//! the jump a result starts: the conversation opens at that message
//! ([`super::Chat::jump`], carried out by the conversation view).

use leptos::{prelude::*, task::spawn_local};

use super::{debounce, local_hhmm, use_chat};
use crate::api::{
    chat::search_messages,
    dto::{MessageSearchHit, MessageSearchPage},
};

/// Characters of context kept before the match in a snippet, and in all.
const SNIPPET_BEFORE: usize = 30;
const SNIPPET_CHARS: usize = 120;

/// The results of the message search box.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MessageResults {
    pub query: String,
    pub hits: Vec<MessageSearchHit>,
    pub next_cursor: Option<String>,
    pub loading: bool,
    pub error: Option<String>,
}

/// The message search's state: what the box holds and what was found.
#[derive(Clone, Copy)]
pub struct MessageSearch {
    pub query: RwSignal<String>,
    /// `None` while the box is empty.
    pub results: RwSignal<Option<MessageResults>>,
    typed: StoredValue<u64>,
}

impl MessageSearch {
    pub fn new() -> Self {
        Self { query: RwSignal::new(String::new()), results: RwSignal::new(None), typed: StoredValue::new(0) }
    }

    /// Whether the box has a query (its results replace the lists).
    pub fn active(self) -> bool {
        self.query.with(|q| !q.trim().is_empty())
    }

    /// The box changed: search once typing pauses.
    fn typed(self, q: String) {
        self.query.set(q.clone());
        debounce(self.typed, q, || self.results.set(None), move |q| self.run(q, false));
    }

    /// Runs a search (a new one replaces the old), or loads its next page
    /// with `more`.
    fn run(self, query: String, more: bool) {
        let query = query.trim().to_string();
        if query.is_empty() {
            self.results.set(None);
            return;
        }
        let cursor = if more {
            match self
                .results
                .with_untracked(|r| r.as_ref().filter(|r| r.query == query).and_then(|r| r.next_cursor.clone()))
            {
                Some(c) => Some(c),
                None => return,
            }
        } else {
            None
        };
        self.results.update(|r| {
            let r = r.get_or_insert_with(MessageResults::default);
            if r.query != query || !more {
                *r = MessageResults { query: query.clone(), ..MessageResults::default() };
            }
            r.loading = true;
        });
        spawn_local(fetch_page(self, query, cursor));
    }
}

/// Fetches one page of results for `query` into `search`. Behind a split
/// point (feature `split`), with the results list: the search's code is
/// fetched the first time someone searches, not with the chat page.
#[cfg_attr(feature = "split", leptos::lazy)]
async fn fetch_page(search: MessageSearch, query: String, cursor: Option<String>) {
    let result = search_messages(query.clone(), cursor, None).await;
    // Answers to a query the box no longer holds are dropped.
    if search.results.try_with_untracked(|r| r.as_ref().is_none_or(|r| r.query != query)).unwrap_or(true) {
        return;
    }
    search.results.update(|r| {
        let Some(r) = r else { return };
        r.loading = false;
        match result {
            Ok(MessageSearchPage { results, next_cursor }) => {
                let hits = results.into_iter().filter(|h| !r.hits.iter().any(|x| x.message.id == h.message.id));
                r.hits.extend(hits.collect::<Vec<_>>());
                r.next_cursor = next_cursor;
                r.error = None;
            }
            Err(e) => r.error = Some(e.message),
        }
    });
}

/// What the message search found (see [`fetch_page`] on the split point).
pub fn message_results(search: MessageSearch) -> impl IntoView {
    view! {
        <Suspense fallback=|| view! { <Searching /> }>
            {Suspend::new(results_list(search))}
        </Suspense>
    }
}

#[cfg_attr(feature = "split", leptos::lazy)]
async fn results_list(search: MessageSearch) -> AnyView {
    view! { <MessageResultsList search /> }.into_any()
}

/// The "Search messages" box.
#[component]
pub fn MessageSearchBox(search: MessageSearch) -> impl IntoView {
    view! {
        <label class="input input-sm w-full">
            <svg class="size-4 opacity-60" xmlns="http://www.w3.org/2000/svg" fill="none" viewBox="0 0 24 24" stroke="currentColor" stroke-width="2" aria-hidden="true">
                <path stroke-linecap="round" stroke-linejoin="round" d="M8 10h8M8 14h5M21 12c0 4.418-4.03 8-9 8a9.77 9.77 0 0 1-4-.8L3 20l1.3-3.9A7.6 7.6 0 0 1 3 12c0-4.418 4.03-8 9-8s9 3.582 9 8Z" />
            </svg>
            <span class="sr-only">"Search messages"</span>
            <input
                type="search"
                placeholder="Search messages"
                autocomplete="off"
                maxlength="100"
                data-testid="message-search"
                prop:value=move || search.query.get()
                on:input=move |ev| search.typed(event_target_value(&ev))
            />
        </label>
    }
}

/// What the message search found, a page at a time.
#[component]
fn MessageResultsList(search: MessageSearch) -> impl IntoView {
    let chat = use_chat();
    move || {
        let Some(results) = search.results.get() else { return view! { <Searching /> }.into_any() };
        if let Some(err) = results.error.clone() {
            return view! { <div role="alert" class="alert alert-error m-3 text-sm">{err}</div> }.into_any();
        }
        if results.hits.is_empty() {
            return if results.loading {
                view! { <Searching /> }.into_any()
            } else {
                view! {
                    <p class="p-4 text-sm text-base-content/60" data-testid="no-message-results">"No messages match."</p>
                }
                .into_any()
            };
        }
        let words = query_words(&results.query);
        let more = results.next_cursor.is_some();
        let query = results.query.clone();
        let me = chat.me.get();
        view! {
            <ul class="menu w-full gap-1" data-testid="message-results" aria-label="Messages found">
                {results
                    .hits
                    .into_iter()
                    .filter_map(|hit| {
                        let own = me.as_deref() == Some(hit.message.sender_id.as_str());
                        // A direct chat's hit names the other member; a
                        // group's names the group (and the sender, once known).
                        let (peer_id, sender, with) = match (&hit.peer, &hit.group) {
                            (Some(peer), _) => (
                                peer.id.clone(),
                                if own { "You".to_string() } else { peer.full_name.clone() },
                                if own { format!("to {}", peer.full_name) } else { String::new() },
                            ),
                            (None, Some(group)) => {
                                let sender = if own {
                                    "You".to_string()
                                } else {
                                    chat.ensure_person(&hit.message.sender_id);
                                    chat.contact(&hit.message.sender_id).map(|c| c.full_name).unwrap_or_default()
                                };
                                (group.id.clone(), sender, format!("in {}", group.name))
                            }
                            (None, None) => return None,
                        };
                        let (before, matched, after) = snippet(&hit.message.text, &words);
                        let time = local_hhmm(&hit.message.created_at);
                        let message_id = hit.message.id.clone();
                        let jump = (peer_id.clone(), message_id.clone());
                        Some(view! {
                            <li>
                                <a
                                    href=format!("/chat/{peer_id}")
                                    class="flex flex-col items-stretch gap-0.5"
                                    data-testid="message-result"
                                    data-message-id=message_id
                                    data-peer-id=peer_id.clone()
                                    on:click=move |_| chat.jump.set(Some(jump.clone()))
                                >
                                    <span class="flex items-baseline gap-2 text-xs">
                                        <span class="min-w-0 flex-1 truncate font-medium">
                                            {sender} " " <span class="text-base-content/60">{with}</span>
                                        </span>
                                        <time class="shrink-0 text-base-content/60" datetime=hit.message.created_at.clone()>
                                            {time}
                                        </time>
                                    </span>
                                    <span class="line-clamp-2 text-sm break-words" data-testid="message-snippet">
                                        {before}
                                        <mark class="rounded-sm bg-warning/40 text-inherit">{matched}</mark>
                                        {after}
                                    </span>
                                </a>
                            </li>
                        })
                    })
                    .collect_view()}
            </ul>
            <Show when=move || more>
                <div class="p-2 text-center">
                    <button
                        type="button"
                        class="btn btn-ghost btn-sm"
                        on:click={
                            let query = query.clone();
                            move |_| search.run(query.clone(), true)
                        }
                    >
                        "More results"
                    </button>
                </div>
            </Show>
        }
        .into_any()
    }
}

#[component]
fn Searching() -> impl IntoView {
    view! {
        <p class="flex items-center gap-2 p-4 text-sm text-base-content/60" aria-busy="true">
            <span class="loading loading-spinner loading-xs" aria-hidden="true"></span>
            "Searching…"
        </p>
    }
}

/// The words of a query as the snippet looks for them: runs of letters
/// and digits, lowercase.
pub fn query_words(query: &str) -> Vec<Vec<char>> {
    query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.chars().flat_map(char::to_lowercase).collect())
        .collect()
}

/// `text` around the first place one of `words` starts a word, as (before,
/// the match, after), cut to about [`SNIPPET_CHARS`] with "…" where cut;
/// the start of the text with no match when none is found there (the
/// server also matches across diacritics).
pub fn snippet(text: &str, words: &[Vec<char>]) -> (String, String, String) {
    let chars: Vec<char> = text.split_whitespace().collect::<Vec<_>>().join(" ").chars().collect();
    let lower: Vec<char> = chars.iter().map(|c| c.to_lowercase().next().unwrap_or(*c)).collect();
    let found = (0..lower.len())
        .filter(|&i| i == 0 || !lower[i - 1].is_alphanumeric())
        .find_map(|i| words.iter().find(|w| lower[i..].starts_with(w)).map(|w| (i, w.len())));
    let (start, len) = found.unwrap_or((0, 0));
    let from = start.saturating_sub(SNIPPET_BEFORE);
    let to = chars.len().min((from + SNIPPET_CHARS).max(start + len));
    let piece = |a: usize, b: usize| chars[a..b].iter().collect::<String>();
    let mut before = piece(from, start);
    if from > 0 {
        before.insert(0, '…');
    }
    let mut after = piece(start + len, to);
    if to < chars.len() {
        after.push('…');
    }
    (before, piece(start, start + len), after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_centre_on_the_first_word_match() {
        let words = query_words("CAF");
        assert_eq!(snippet("Meet at the Café", &words), ("Meet at the ".into(), "Caf".into(), "é".into()));
        let long = format!("{} needle {}", "a ".repeat(60), "b ".repeat(100));
        let (before, m, after) = snippet(&long, &query_words("needle"));
        assert!(before.starts_with('…') && before.chars().count() == SNIPPET_BEFORE + 1, "{before}");
        assert_eq!(m, "needle");
        assert!(after.ends_with('…'));
        // Words, not substrings; no match: the start, unmarked.
        assert_eq!(snippet("scafe", &words), (String::new(), String::new(), "scafe".into()));
        assert_eq!(snippet("", &words), Default::default());
        assert_eq!(snippet("x (needle)", &query_words("\"needle*")).1, "needle");
    }
}
