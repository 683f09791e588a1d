//! Group management: the "New group" dialog (a name and members picked
//! through the people search) and a group's details panel (members and
//! roles; admins rename, "Add member" and remove; everyone can "Leave
//! group"). Both are behind split points (feature `split`): their code is
//! fetched the first time someone opens them, not with the chat page.
//! Every change answers with the group's new state, applied at once; the
//! `group` event brings the same to the other members and tabs.

use leptos::{prelude::*, task::spawn_local};
use leptos_router::{NavigateOptions, hooks::use_navigate};

use super::{Chat, debounce, sidebar::Avatar, toggle_button};
use crate::api::{
    AppError,
    chat::{add_group_members, create_group, get_group, leave_group, remove_group_member, rename_group, search_users},
    dto::{Contact, Group, GroupRole, MAX_GROUP_NAME_CHARS},
};

/// The "New group" dialog while `open` holds.
#[cfg_attr(feature = "split", leptos::lazy)]
pub async fn new_group_dialog(chat: Chat, open: RwSignal<bool>) -> AnyView {
    view! { <NewGroupDialog chat open /> }.into_any()
}

/// The details panel of the group `group_id` while `open` holds.
#[cfg_attr(feature = "split", leptos::lazy)]
pub async fn group_details(chat: Chat, group_id: String, open: RwSignal<bool>) -> AnyView {
    view! { <GroupDetails chat group_id open /> }.into_any()
}

/// Runs a group change and applies the group it answers with; a refusal
/// becomes a toast. `done` runs after success.
fn change(chat: Chat, call: impl Future<Output = Result<Group, AppError>> + 'static, done: impl FnOnce() + 'static) {
    spawn_local(async move {
        match call.await {
            Ok(group) => {
                chat.on_group(group);
                done();
            }
            Err(e) => chat.notify_error(e.message),
        }
    });
}

#[component]
fn NewGroupDialog(chat: Chat, open: RwSignal<bool>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let members = RwSignal::new(Vec::<Contact>::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let navigate = use_navigate();
    let create = move || {
        let group_name = name.get_untracked().trim().to_string();
        // The server's own rule, checked before the round trip.
        if let Some(problem) = crate::api::rules::group_name(&group_name) {
            error.set(Some(problem));
            return;
        }
        let ids = members.with_untracked(|m| m.iter().map(|c| c.id.clone()).collect());
        busy.set(true);
        let navigate = navigate.clone();
        spawn_local(async move {
            match create_group(group_name, ids).await {
                Ok(group) => {
                    let path = format!("/chat/{}", group.id);
                    chat.on_group(group);
                    open.set(false);
                    navigate(&path, NavigateOptions::default());
                }
                // The dialog may have been closed meanwhile.
                Err(e) => {
                    busy.try_set(false);
                    error.try_set(Some(e.message));
                }
            }
        });
    };
    let picked = Signal::derive(move || members.with(|m| m.iter().map(|c| c.id.clone()).collect::<Vec<_>>()));
    view! {
        <div class="modal modal-open" role="dialog" aria-modal="true" aria-labelledby="new-group-title">
            <form
                class="modal-box space-y-3"
                on:submit=move |ev| {
                    ev.prevent_default();
                    create();
                }
            >
                <h3 id="new-group-title" class="text-lg font-bold">"New group"</h3>
                {name_field(name)}
                <PeoplePicker
                    label="Members"
                    exclude=picked
                    on_pick=Callback::new(move |c: Contact| members.update(|m| m.push(c)))
                />
                <ul class="flex flex-wrap gap-1" aria-label="Chosen members">
                    <For each=move || members.get() key=|c| c.id.clone() let:c>
                        <li class="badge badge-outline gap-1" data-testid="chosen-member">
                            {c.full_name.clone()}
                            <button
                                type="button"
                                class="link"
                                aria-label=format!("Remove {}", c.full_name)
                                on:click=move |_| members.update(|m| m.retain(|x| x.id != c.id))
                            >
                                "×"
                            </button>
                        </li>
                    </For>
                </ul>
                {move || error.get().map(|e| view! { <p role="alert" class="text-sm text-error">{e}</p> })}
                <div class="modal-action">
                    <button type="button" class="btn btn-ghost" on:click=move |_| open.set(false)>"Cancel"</button>
                    <button type="submit" class="btn btn-primary" disabled=move || busy.get()>"Create"</button>
                </div>
            </form>
        </div>
    }
}

/// The "Group name" field (creating a group, renaming one).
fn name_field(name: RwSignal<String>) -> impl IntoView {
    view! {
        <label class="block space-y-1">
            <span class="text-sm font-medium">"Group name"</span>
            <input
                class="input input-sm w-full"
                aria-label="Group name"
                maxlength=MAX_GROUP_NAME_CHARS
                prop:value=move || name.get()
                on:input=move |ev| name.set(event_target_value(&ev))
            />
        </label>
    }
}

/// A people search box ("Search people" under `label`): matching people
/// not in `exclude`, each a button that hands them to `on_pick`.
#[component]
fn PeoplePicker(label: &'static str, exclude: Signal<Vec<String>>, on_pick: Callback<Contact>) -> impl IntoView {
    let query = RwSignal::new(String::new());
    let found = RwSignal::new(Vec::<Contact>::new());
    let typed = StoredValue::new(0u64);
    let on_input = move |ev| {
        let q = event_target_value(&ev);
        query.set(q.clone());
        let search = move |q: String| {
            let n = typed.try_get_value();
            spawn_local(async move {
                // Only the answer to what the box still holds is shown.
                if let Ok(page) = search_users(q.trim().to_string(), None, None).await
                    && typed.try_get_value() == n
                {
                    found.try_set(page.contacts);
                }
            });
        };
        debounce(typed, q, || found.set(Vec::new()), search);
    };
    let shown = move || {
        let exclude = exclude.get();
        found.with(|f| f.iter().filter(|c| !exclude.contains(&c.id)).cloned().collect::<Vec<_>>())
    };
    view! {
        <label class="block space-y-1">
            <span class="text-sm font-medium">{label}</span>
            <input
                type="search"
                class="input input-sm w-full"
                placeholder="Search people by name or email"
                aria-label=label
                autocomplete="off"
                prop:value=move || query.get()
                on:input=on_input
            />
        </label>
        <ul class="menu menu-sm w-full" data-testid="people-picker">
            <For each=shown key=|c| c.id.clone() let:c>
                <li>
                    <button
                        type="button"
                        data-testid="pick-person"
                        data-user-id=c.id.clone()
                        on:click=move |_| {
                            on_pick.run(c.clone());
                            query.set(String::new());
                            found.set(Vec::new());
                        }
                    >
                        {c.full_name.clone()}
                    </button>
                </li>
            </For>
        </ul>
    }
}

#[component]
fn GroupDetails(chat: Chat, group_id: String, open: RwSignal<bool>) -> impl IntoView {
    let info = {
        let id = group_id.clone();
        Memo::new(move |_| chat.groups.with(|g| g.get(&id).cloned()))
    };
    // The conversation list only gives a count: fetch the members.
    if info.with_untracked(|i| i.as_ref().is_none_or(|i| i.members.is_none())) {
        let id = group_id.clone();
        spawn_local(async move {
            match get_group(id).await {
                Ok(group) => chat.on_group(group),
                Err(e) => chat.notify_error(e.message),
            }
        });
    }
    let me = move || chat.me.get().unwrap_or_default();
    let admin = Memo::new(move |_| info.with(|i| i.as_ref().is_some_and(|i| i.is_admin(&me()))));
    let members = Memo::new(move |_| info.with(|i| i.as_ref().and_then(|i| i.members.clone()).unwrap_or_default()));
    let creator = Memo::new(move |_| info.with(|i| i.as_ref().map(|i| i.creator_id.clone()).unwrap_or_default()));
    let name = RwSignal::new(info.with_untracked(|i| i.as_ref().map(|i| i.name.clone()).unwrap_or_default()));
    let adding = RwSignal::new(false);
    let leaving = RwSignal::new(false);
    let id = StoredValue::new(group_id);

    let rename = move || {
        let new_name = name.get_untracked().trim().to_string();
        if crate::api::rules::group_name(&new_name).is_none() {
            change(chat, rename_group(id.get_value(), new_name), || {});
        }
    };
    let add = Callback::new(move |c: Contact| change(chat, add_group_members(id.get_value(), vec![c.id]), || {}));
    let navigate = use_navigate();
    let leave = move |_| {
        let navigate = navigate.clone();
        // Read now: the panel (and its values) goes once the user has left.
        let group_id = id.get_value();
        spawn_local(async move {
            match leave_group(group_id.clone()).await {
                Ok(()) => {
                    chat.on_group_removed(&group_id);
                    navigate("/chat", NavigateOptions::default());
                }
                Err(e) => chat.notify_error(e.message),
            }
        });
    };
    let picked = Signal::derive(move || members.with(|m| m.iter().map(|m| m.contact.id.clone()).collect::<Vec<_>>()));

    view! {
        <section
            class="max-h-[60%] space-y-3 overflow-y-auto border-b border-base-300 bg-base-200 p-3"
            aria-label="Group details"
            data-testid="group-details"
        >
            <div class="flex justify-end">
                <button type="button" class="btn btn-ghost btn-xs" on:click=move |_| open.set(false)>"Close"</button>
            </div>
            <Show when=move || admin.get()>
                <form
                    class="flex items-end gap-2"
                    on:submit=move |ev| {
                        ev.prevent_default();
                        rename();
                    }
                >
                    <div class="min-w-0 flex-1">{name_field(name)}</div>
                    <button type="submit" class="btn btn-sm">"Rename"</button>
                </form>
            </Show>
            <h3 class="text-sm font-semibold">"Members"</h3>
            <ul class="space-y-1" data-testid="group-members">
                <For each=move || members.get() key=|m| (m.contact.id.clone(), m.role.as_str()) let:m>
                    {
                        let uid = m.contact.id.clone();
                        let removable = {
                            let uid = uid.clone();
                            move || admin.get() && uid != me() && uid != creator.get()
                        };
                        let full_name = m.contact.full_name.clone();
                        let target = uid.clone();
                        view! {
                            <li class="flex items-center gap-2" data-testid="group-member" data-user-id=uid.clone()>
                                <Avatar name=m.contact.full_name.clone() picture=m.contact.profile_picture.clone() />
                                <span class="min-w-0 flex-1 truncate">{m.contact.full_name.clone()}</span>
                                {(m.role == GroupRole::Admin).then(|| view! { <span class="badge badge-sm">"Admin"</span> })}
                                <Show when=removable.clone()>
                                    {
                                        let uid = target.clone();
                                        view! {
                                            <button
                                                type="button"
                                                class="btn btn-ghost btn-xs"
                                                aria-label=format!("Remove {full_name}")
                                                on:click=move |_| change(chat, remove_group_member(id.get_value(), uid.clone()), || {})
                                            >
                                                "Remove"
                                            </button>
                                        }
                                    }
                                </Show>
                            </li>
                        }
                    }
                </For>
            </ul>
            <Show when=move || admin.get()>
                {toggle_button(adding, "btn btn-sm", "Add member")}
                <Show when=move || adding.get()>
                    <PeoplePicker label="Add member" exclude=picked on_pick=add />
                </Show>
            </Show>
            <div class="flex items-center gap-2">
                <Show
                    when=move || leaving.get()
                    fallback=move || view! {
                        <button type="button" class="btn btn-error btn-outline btn-sm" on:click=move |_| leaving.set(true)>
                            "Leave group"
                        </button>
                    }
                >
                    <span class="text-sm" role="group" aria-label="Confirm leaving">"Leave this group?"</span>
                    <button type="button" class="btn btn-error btn-sm" on:click=leave.clone()>
                        "Leave"
                    </button>
                    <button type="button" class="btn btn-ghost btn-sm" on:click=move |_| leaving.set(false)>"Cancel"</button>
                </Show>
            </div>
        </section>
    }
}
