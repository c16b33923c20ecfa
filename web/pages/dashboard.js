// System overview.

import { get } from '../api.js';
import { h, heading, formatDuration, formatDate, extensionPath } from '../ui.js';

function stat(label, value) {
  return [h('dt', {}, label), h('dd', {}, value)];
}

export async function render(container, { session }) {
  const me = session.me;
  const body = h('div', { class: 'cards' }, h('p', { class: 'muted' }, 'Loading…'));
  container.append(heading('Dashboard'), body);
  const s = await get('/system/status');
  const admin = me.role === 'admin';
  body.replaceChildren(
    h('section', { class: 'card', 'aria-labelledby': 'dash-system' },
      h('h2', { id: 'dash-system' }, 'System'),
      h('dl', { class: 'stats' },
        stat('Version', s.version),
        stat('Uptime', formatDuration(s.uptime_seconds)),
        stat('Started', formatDate(s.started_at)),
        stat('Database', s.database),
        stat('SIP realm', s.sip_realm))),
    h('section', { class: 'card', 'aria-labelledby': 'dash-ext' },
      h('h2', { id: 'dash-ext' }, 'Extensions'),
      h('dl', { class: 'stats' },
        stat('Total', String(s.extensions.total)),
        stat('Active', String(s.extensions.active)),
        stat('Active admins', String(s.extensions.admins))),
      h('p', {}, admin
        ? h('a', { href: '#/extensions' }, 'Manage extensions')
        : h('a', { href: `#${extensionPath(me.extension)}` }, 'My extension'))),
  );
}
