// The member list and who is typing.

import { avatar, h } from './dom.js';
import { store, toggleHidden } from './store.js';

// A typing notice that is not refreshed is dropped after this long, in case
// the "stopped typing" event never comes (a closed laptop, a lost frame).
const TYPING_EXPIRES_MS = 6000;

const ROLE_NAMES = { owner: 'Owner', moderator: 'Mod' };
const ROLE_TITLES = { owner: 'Owns the room: names moderators', moderator: 'Moderator' };

export class Members {
  constructor({ list, count, typingLine }, onChange, onHide = () => {}, onRole = async () => {}, onKick = async () => {}, onMute = async () => {}, onBan = async () => {}) {
    this.list = list;
    this.count = count;
    this.typingLine = typingLine;
    this.onChange = onChange;
    this.onHide = onHide;
    // Gives a member a role (the owner's controls); rejects with the error to show.
    this.onRole = onRole;
    // Removes a member from the room (owner and moderators).
    this.onKick = onKick;
    // Mutes a member, or lets them speak again (owner and moderators).
    this.onMute = onMute;
    // Bans a member: their session and addresses (owner and moderators).
    this.onBan = onBan;
    // Members who may not post, by user id (as far as this page has heard).
    this.muted = new Set();
    // The owner and moderators, by user id.
    this.roles = new Map();
    // Users who are bots: programs posting through an integration of the
    // room (known from their messages, or from the owner's list).
    this.bots = new Set();
    this.self = null;
    this.users = new Map();
    this.typing = new Map();
  }

  setSelf(user) {
    this.self = user;
  }

  get size() {
    return this.users.size;
  }

  /** Replaces the roles (after a join). */
  setRoles(roles) {
    this.roles = new Map(Object.entries(roles ?? {}));
    this.render();
  }

  /** A member's role changed. */
  setRole(user, role) {
    if (role === 'member') this.roles.delete(user.id);
    else this.roles.set(user.id, role);
    this.render();
  }

  /** Notes that a member was muted, or may speak again. */
  setMuted(id, muted) {
    if (muted) this.muted.add(id);
    else this.muted.delete(id);
    this.render();
  }

  /** Replaces the muted members (from `bans`). */
  setMutedAll(ids) {
    this.muted = new Set(ids);
    this.render();
  }

  /** Notes that `user` is a bot. */
  markBot(user) {
    if (this.bots.has(user.id)) return;
    this.bots.add(user.id);
    if (this.users.has(user.id)) this.render();
  }

  /** Replaces the whole list (after a join); returns who came and who went. */
  reset(users) {
    const previous = this.users;
    this.users = new Map(users.map((user) => [user.id, user]));
    const came = users.filter((user) => !previous.has(user.id));
    const went = [...previous.values()].filter((user) => !this.users.has(user.id));
    for (const id of this.typing.keys()) {
      if (!this.users.has(id)) this.stopTyping(id);
    }
    this.render();
    return { came, went };
  }

  /** Returns false if the user was already listed. */
  add(user) {
    const known = this.users.has(user.id);
    this.users.set(user.id, user);
    this.render();
    return !known;
  }

  /** Returns false if the user was not listed. */
  remove(user) {
    const known = this.users.delete(user.id);
    this.stopTyping(user.id);
    this.render();
    return known;
  }

  setTyping(user, active) {
    if (!active || store.hidden.has(user.id)) {
      this.stopTyping(user.id);
      return;
    }
    clearTimeout(this.typing.get(user.id)?.timer);
    const timer = setTimeout(() => this.stopTyping(user.id), TYPING_EXPIRES_MS);
    this.typing.set(user.id, { user, timer });
    this.render();
  }

  /**
   * The menu for another member: for the owner, naming moderators and
   * handing the room over; for the owner and moderators, removing those
   * they may remove. Nothing for the others.
   */
  roleMenu(user, role, mine) {
    const owner = mine === 'owner';
    const removable = owner ? role !== 'owner' : mine === 'moderator' && role === 'member';
    if (!owner && !removable) return null;
    const item = (label, action, danger = false) => {
      const button = h('button', { type: 'button', role: 'menuitem', class: danger ? 'member-menu-item danger' : 'member-menu-item' }, label);
      button.addEventListener('click', async () => {
        menu.open = false;
        try {
          await action();
        } catch (error) {
          this.notice(`Could not do that for ${user.name}: ${error.message}`);
        }
      });
      return button;
    };
    const menu = h('details', { class: 'member-menu' },
      h('summary', { 'aria-label': `Manage ${user.name}`, title: 'Manage' }, '⋯'),
      h('div', { class: 'member-menu-list', role: 'menu' },
        owner && role === 'moderator' ? item('Remove as moderator', () => this.onRole(user, 'member')) : null,
        owner && role !== 'moderator' ? item('Make moderator', () => this.onRole(user, 'moderator')) : null,
        owner ? item('Make owner (you become a moderator)', () => this.onRole(user, 'owner')) : null,
        removable && this.muted.has(user.id) ? item('Let speak again', () => this.onMute(user, false)) : null,
        removable && !this.muted.has(user.id) ? item('Mute', () => this.onMute(user, true)) : null,
        removable && !this.muted.has(user.id)
          ? item('Shadow-mute (their messages reach only them)', () => this.onMute(user, true, true))
          : null,
        removable ? item('Remove from the room for 10 minutes', () => this.onKick(user), true) : null,
        removable ? item('Ban from the room', () => this.onBan(user), true) : null));
    return menu;
  }

  /** Shows a line under the list (a failed role change). */
  notice(text) {
    this.typingLine.textContent = text;
  }

  /** Hides (or shows again) a member's messages on this device. */
  hideButton(user, isHidden) {
    const label = isHidden ? `Show messages from ${user.name}` : `Hide messages from ${user.name}`;
    const button = h('button', {
      type: 'button',
      class: 'member-hide',
      'aria-pressed': String(isHidden),
      'aria-label': label,
      title: isHidden ? 'Hidden on this device: click to show again' : 'Hide this person\'s messages on this device',
    }, isHidden ? 'Show' : 'Hide');
    button.addEventListener('click', () => {
      if (toggleHidden(user.id)) this.stopTyping(user.id);
      this.render();
      this.onHide();
      this.list.querySelector(`[data-user="${CSS.escape(user.id)}"] .member-hide`)?.focus();
    });
    return button;
  }

  stopTyping(id) {
    const entry = this.typing.get(id);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.typing.delete(id);
    this.render();
  }

  render() {
    const selfId = this.self?.id;
    const users = [...this.users.values()].sort((a, b) =>
      Number(b.id === selfId) - Number(a.id === selfId) || a.name.localeCompare(b.name));
    const hidden = store.hidden;
    const mine = this.roles.get(selfId);
    // A menu open while the list is drawn again (someone typing) stays open.
    const open = this.list.querySelector('.member-menu[open]')?.closest('.member')?.dataset.user;
    this.list.replaceChildren(...users.map((user) => {
      const isHidden = hidden.has(user.id);
      const role = this.roles.get(user.id);
      return h('li', { class: isHidden ? 'member is-hidden' : 'member', 'data-user': user.id },
        avatar(user),
        h('span', { class: 'member-name' }, user.name, user.id === selfId ? h('span', { class: 'you' }, ' (you)') : null),
        role ? h('span', { class: `role-badge ${role}`, title: ROLE_TITLES[role] }, ROLE_NAMES[role]) : null,
        this.bots.has(user.id) ? h('span', { class: 'role-badge bot', title: 'A program posting through an integration of this room' }, 'Bot') : null,
        this.muted.has(user.id) ? h('span', { class: 'role-badge muted', title: 'May not post' }, 'Muted') : null,
        this.typing.has(user.id) ? h('span', { class: 'member-typing' }, 'typing…') : null,
        user.id === selfId ? null : this.hideButton(user, isHidden),
        user.id !== selfId ? this.roleMenu(user, role ?? 'member', mine) : null);
    }));
    if (open) {
      const menu = this.list.querySelector(`.member[data-user="${CSS.escape(open)}"] .member-menu`);
      if (menu) menu.open = true;
    }
    this.count.textContent = String(users.length);

    const names = [...this.typing.values()].map(({ user }) => user.name);
    if (names.length === 0) this.typingLine.textContent = '';
    else if (names.length === 1) this.typingLine.textContent = `${names[0]} is typing…`;
    else if (names.length === 2) this.typingLine.textContent = `${names[0]} and ${names[1]} are typing…`;
    else this.typingLine.textContent = 'Several people are typing…';

    this.onChange(users.length);
  }
}
