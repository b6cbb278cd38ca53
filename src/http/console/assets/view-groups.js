import { getJson } from './api.js';
import { card, errorBox, h, replace, table, viewLink } from './dom.js';
import { formatCount } from './format.js';

export const groupPath = (group) => `/v1/groups/${encodeURIComponent(group)}`;

/** Every consumer group of the cluster (`GET /v1/groups`): state, members, coordinator. */
export function mountGroups(root, _params, ctx) {
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  replace(root, h('h1', {}, 'Consumer groups'), list);
  ctx.every(ctx.refreshMs, async () => {
    try {
      const { groups } = await getJson('/v1/groups', ctx.signal);
      if (groups.length === 0) {
        replace(list, h('p', { class: 'muted', id: 'no-groups' }, 'No consumer groups yet.'));
        return;
      }
      replace(
        list,
        table(
          [
            { label: 'Group' },
            { label: 'State' },
            { label: 'Members', num: true },
            { label: 'Coordinator', num: true },
          ],
          groups.map((g) => ({
            attributes: { 'data-group': g.group },
            cells: [
              viewLink(['groups', g.group], g.group),
              state(g.state),
              formatCount(g.members),
              `node ${g.coordinator}`,
            ],
          })),
          { id: 'groups' },
        ),
      );
    } catch (error) {
      if (!ctx.signal.aborted) replace(list, errorBox(error));
    }
  });
}

/** One group (`GET /v1/groups/{group}`): its members and, per partition, owner, committed offset and lag. */
export function mountGroup(root, [group], ctx) {
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  replace(root, h('h1', {}, 'Group ', h('code', {}, group)), body);
  ctx.every(ctx.refreshMs, async () => {
    try {
      const d = await getJson(groupPath(group), ctx.signal);
      const lag = d.partitions.reduce((sum, p) => sum + Math.max(0, p.lag), 0);
      replace(
        body,
        h(
          'div',
          { class: 'cards' },
          card('State', state(d.state), { 'data-field': 'state' }),
          card('Members', formatCount(d.members.length), { 'data-field': 'members' }),
          card('Group epoch', formatCount(d.groupEpoch), { 'data-field': 'epoch' }),
          card('Lag', formatCount(lag), { 'data-field': 'lag' }),
          card('Coordinator', `node ${d.coordinator}`, { 'data-field': 'coordinator' }),
        ),
        h('h2', {}, 'Members'),
        table(
          [
            { label: 'Member' },
            { label: 'Instance' },
            { label: 'Epoch', num: true },
            { label: 'Subscription' },
            { label: 'Partitions' },
          ],
          d.members.map((m) => ({
            attributes: { 'data-member': m.memberId },
            cells: [
              h('code', {}, m.memberId),
              m.instanceId ?? '—',
              formatCount(m.memberEpoch),
              m.pattern === null ? m.topics.join(', ') : `/${m.pattern}/`,
              [
                ...m.assignment.map((tp) => `${tp.topic}-${tp.partition}`),
                ...m.revoking.map((tp) => `${tp.topic}-${tp.partition} (revoking)`),
              ].join(' '),
            ],
          })),
          { id: 'members' },
        ),
        h('h2', {}, 'Partitions'),
        table(
          [
            { label: 'Topic' },
            { label: 'Partition', num: true },
            { label: 'Committed', num: true },
            { label: 'Log end', num: true },
            { label: 'Lag', num: true },
            { label: 'Owner' },
          ],
          d.partitions.map((p) => ({
            attributes: { 'data-partition': `${p.topic}-${p.partition}` },
            cells: [
              viewLink(['topics', p.topic], p.topic),
              viewLink(['topics', p.topic, 'partitions', p.partition], String(p.partition)),
              p.committed === null ? '—' : formatCount(p.committed),
              p.logEndOffset < 0 ? '—' : formatCount(p.logEndOffset),
              p.lag < 0 ? '—' : formatCount(p.lag),
              p.owner === null ? '—' : h('code', {}, p.owner),
            ],
          })),
          { id: 'group-partitions' },
        ),
      );
    } catch (error) {
      if (!ctx.signal.aborted) replace(body, errorBox(error));
    }
  });
}

function state(value) {
  return h('span', { class: value === 'stable' ? 'good' : value === 'empty' ? 'muted' : 'warn' }, value);
}
