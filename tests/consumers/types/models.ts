// Models as apps declare them, against the package's types as installed
// from its tarball: `interface` and `type` models are written, read, patched
// and watched; values that are not JSON do not compile. Checked with
// `tsc --strict` by tests/types.test.mjs; every `@ts-expect-error` line must
// be an error, or tsc fails on the unused directive.

import { open, type Entry, type Json, type WatchEvent, type ZestorStore } from 'zestor';
import { useEntry, useList, useSyncStatus } from 'zestor/react';

interface Task {
  title: string;
  done?: boolean;
  tags: string[];
  owner: { name: string; id: number } | null;
  due?: string;
}

type Note = { text: string; pinned: boolean };

export async function models(): Promise<void> {
  const store: ZestorStore = await open({ name: 'models', sync: { url: 'ws://localhost:8787/sync', namespace: 'demo', token: () => 'jwt' } });

  const task: Task = { title: 'ship', tags: ['a'], owner: null };
  await store.set('task', 't1', task);
  await store.set('task', 't2', { title: 'literal', tags: [], owner: { name: 'kim', id: 1 } } satisfies Task);
  await store.set<Note>('note', 'n1', { text: 'x', pinned: false });
  await store.setMany('task', { t3: task, t4: task });
  await store.setMany('task', [['t5', task]]);
  await store.setFn<Task>('task', 't1', (t) => ({ ...t, done: true }));
  await store.patch<Task>('task', 't1', { owner: null, due: null, done: true });
  await store.set('when', 'w', { at: new Date() });
  const anyJson: Json = { a: [1, 'b', null] };
  await store.set('raw', 'r', anyJson);
  // A generic helper over JSON values.
  const put = <V extends Json>(kind: string, key: string, value: V) => store.set(kind, key, value);
  await put('raw', 'r', [1, 2]);

  const entry: Entry<Task> | undefined = store.get<Task>('task', 't1');
  const title: string | undefined = entry?.value.title;
  const titles: string[] = store.list<Task>('task', (t) => !t.done).map((e) => `${e.key}: ${e.value.title}`);
  const stop = store.watch<Task>('task', { replay: true }, (event: WatchEvent<Task> | null, error) => {
    if (event) console.log(event.value.tags.join(), title, titles);
    else console.warn(error?.code);
  });
  stop();
  for await (const event of store.watchIter<Task>('task')) console.log(event.value.owner?.name);

  interface WithMethod {
    title: string;
    done(): boolean;
  }
  const withMethod: WithMethod = { title: 'x', done: () => true };
  // @ts-expect-error a function is not JSON
  await store.set('task', 'bad', withMethod);
  // @ts-expect-error a bigint is not JSON
  await store.set('task', 'bad', { n: 10n });
  // @ts-expect-error a Map is not JSON
  await store.set('task', 'bad', new Map<string, string>());
  // @ts-expect-error undefined is not JSON
  await store.set('task', 'bad', undefined);
  // @ts-expect-error a patch of a member the model does not have
  await store.patch<Task>('task', 't1', { titel: 'typo' });
  // @ts-expect-error not a known error code
  if (store.status().error?.code === 'no_such_code') return;
}

// The hooks' results are typed by the model.
export function TaskTitle({ store, id }: { store: ZestorStore; id: string }): string {
  const entry = useEntry<Task>(store, 'task', id);
  const open = useList<Task>(store, 'task', (t) => !t.done);
  const status = useSyncStatus(store);
  return `${entry?.value.title ?? '…'} (${open.length} open, ${status.connection})`;
}
