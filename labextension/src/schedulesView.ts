/**
 * The panel's Schedules view: each schedule's rule in words, its next run (ticking), its
 * last run (a link to that task), and Pause / Resume, Run now, Runs, Delete.
 */
import { Dialog, Notification } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { ISchedule, IScheduleEvent } from './api';
import { IAction, actionButtons, confirmDelete } from './actions';
import { STATUS_GLYPH, count, el, fromNow, localTime, shortTime } from './format';
import { ScheduleModel } from './schedules';

export interface IScheduleHooks {
  /** Show the task list filtered to a schedule's runs. */
  showRuns: (id: string) => void;
  /** Open one task's details. */
  showTask: (id: string) => void;
}

export class SchedulesView {
  readonly node = el('div', 'jp-RaythaSchedules');

  constructor(
    readonly model: ScheduleModel,
    private readonly _hooks: IScheduleHooks
  ) {
    this._empty = el('div', 'jp-RaythaSchedules-empty');
    this._list = el('div', 'jp-RaythaSchedules-list');
    this._list.setAttribute('role', 'list');
    this.node.append(this._empty, this._list);
    model.changed.connect(() => this.render());
    // A run's status moves by task events (a schedule's own event comes when it fires).
    model.tasks.taskChanged.connect((_, { task }) => {
      for (const [id, row] of this._rows) {
        const schedule = this.model.get(id);
        if (schedule?.last_run?.task_id === task.id) {
          this._fillTimes(row, schedule, Date.now());
        }
      }
    });
  }

  /** Draw every row again (schedules are few: no virtualising). */
  render(): void {
    const { state, message } = this.model;
    const schedules = state === 'ready' ? this.model.list() : [];
    let empty = '';
    if (state === 'loading') {
      empty = this.model.tasks.state === 'unavailable' ? '' : 'Loading the schedules…';
    } else if (state !== 'ready') {
      empty = message;
    } else if (!schedules.length) {
      empty =
        'No schedules yet. Make one from a notebook: ' +
        "raytha_nb.schedule(task, name='nightly', cron='0 6 * * *') or every=seconds.";
    }
    this._empty.textContent = empty;
    this._empty.hidden = !empty;
    const keep = new Set<string>();
    const now = Date.now();
    for (const schedule of schedules) {
      keep.add(schedule.id);
      let row = this._rows.get(schedule.id);
      if (!row) {
        row = this._makeRow(schedule.id);
        this._rows.set(schedule.id, row);
      }
      this._list.append(row.node); // in order (append moves an existing node)
      this._fill(row, schedule, now);
    }
    for (const [id, row] of this._rows) {
      if (!keep.has(id)) {
        row.node.remove();
        this._rows.delete(id);
      }
    }
  }

  /** Once a second while shown: next runs count down, last runs age. */
  tick(): void {
    const now = Date.now();
    for (const [id, row] of this._rows) {
      const schedule = this.model.get(id);
      if (schedule) {
        this._fillTimes(row, schedule, now);
      }
    }
  }

  private _makeRow(id: string): IRow {
    const node = el('div', 'jp-RaythaSchedule');
    node.setAttribute('role', 'listitem');
    node.dataset.scheduleId = id;
    node.title = 'Show its runs in the task list';
    node.addEventListener('click', () => this._hooks.showRuns(id));
    const name = el('span', 'jp-RaythaSchedule-name');
    const badge = el('span', 'jp-RaythaSchedule-paused', 'Paused');
    const kind = el('span', 'jp-RaythaTask-executor');
    const line1 = el('div', 'jp-RaythaTask-line');
    line1.append(name, kind, badge);
    const rule = el('div', 'jp-RaythaSchedule-rule');
    const next = el('div', 'jp-RaythaSchedule-next');
    const last = el('div', 'jp-RaythaSchedule-last');
    const buttons = el('div', 'jp-RaythaTask-actions jp-RaythaSchedule-actions');
    node.append(line1, rule, next, last, buttons);
    return { node, name, badge, kind, rule, next, last, buttons, key: '', lastKey: '' };
  }

  private _fill(row: IRow, schedule: ISchedule, now: number): void {
    row.node.dataset.paused = String(schedule.paused);
    row.name.textContent = schedule.name;
    row.name.title = `${schedule.name} (${schedule.task})`;
    row.badge.hidden = !schedule.paused;
    row.kind.textContent = schedule.kind;
    row.kind.title = `Runs ${schedule.kind === 'notebook' ? 'the notebook ' : ''}${schedule.task} on the server`;
    row.rule.textContent = schedule.rule;
    const details = [
      `overlap: ${schedule.overlap}`,
      `missed runs: ${schedule.misfire}`,
      schedule.start_at ? `from ${localTime(schedule.start_at)}` : '',
      schedule.end_at ? `until ${localTime(schedule.end_at)}` : ''
    ].filter(Boolean);
    row.rule.title = `${schedule.rule}\n${details.join(' · ')}`;
    this._fillTimes(row, schedule, now);
    // Buttons are rebuilt only when what they do changes: a button replaced mid-click
    // (a schedule event lands every run) would swallow the click.
    const key = `${schedule.paused}|${schedule.name}`;
    if (key !== row.key) {
      row.key = key;
      row.buttons.replaceChildren(...actionButtons(this._actions(schedule.id)));
    }
  }

  private _fillTimes(row: IRow, schedule: ISchedule, now: number): void {
    let next: string;
    if (schedule.paused) {
      next = 'Paused: no runs until resumed';
    } else if (schedule.next_run) {
      next = `Next ${fromNow(schedule.next_run, now)} · ${shortTime(schedule.next_run, now)}`;
    } else {
      next = 'No further runs';
    }
    setText(row.next, next);
    row.next.title = schedule.next_run && !schedule.paused ? localTime(schedule.next_run) : '';
    row.next.dataset.nextRun = schedule.paused ? '' : schedule.next_run ?? '';

    const run = schedule.last_run;
    // The task list's copy of the run is the live one.
    const status = run ? (this.model.tasks.get(run.task_id)?.status ?? run.status) : null;
    const tally = [
      count(schedule.runs, 'run'),
      schedule.skipped ? `${schedule.skipped} skipped` : ''
    ].filter(Boolean).join(', ');
    const lastKey = run ? `${run.task_id}|${status}|${tally}` : `|${tally}`;
    if (lastKey !== row.lastKey) {
      row.lastKey = lastKey;
      if (run && status) {
        const link = el('a', 'jp-RaythaDetails-link jp-RaythaSchedule-lastRun');
        link.href = '#';
        link.dataset.taskId = run.task_id;
        link.dataset.status = status;
        link.title = `Show this run (${status}) · ${run.task_id}`;
        link.append(
          el('span', 'jp-RaythaTask-glyph', STATUS_GLYPH[status] ?? '?'),
          el('span', 'jp-RaythaSchedule-lastStatus', status)
        );
        link.addEventListener('click', ev => {
          ev.preventDefault();
          ev.stopPropagation();
          this._hooks.showTask(run.task_id);
        });
        row.lastWhen = el('span', 'jp-RaythaSchedule-when');
        row.last.replaceChildren('Last ', link, row.lastWhen, ' · ', this._historyLink(schedule.id, tally));
      } else {
        row.lastWhen = undefined;
        row.last.replaceChildren('Not run yet · ', this._historyLink(schedule.id, tally));
      }
    }
    if (row.lastWhen) {
      setText(row.lastWhen, run?.at ? ` ${fromNow(run.at, now)}` : '');
      row.lastWhen.title = run?.at ? localTime(run.at) : '';
    }
    row.last.title = row.last.textContent ?? ''; // whole, where the sidebar cuts it
  }

  /** "12 runs, 2 skipped": opens its firings (runs, skips and why). */
  private _historyLink(id: string, tally: string): HTMLElement {
    const link = el('a', 'jp-RaythaDetails-link jp-RaythaSchedule-history', tally);
    link.href = '#';
    link.title = 'Its firings, newest first: runs started, runs skipped and why';
    link.addEventListener('click', ev => {
      ev.preventDefault();
      ev.stopPropagation();
      void this._try('read the firings of', () => this._showHistory(id));
    });
    return link;
  }

  /** A dialog of the schedule's latest firings; a run's link opens that task. */
  private async _showHistory(id: string): Promise<void> {
    const { events } = await this.model.tasks.api.scheduleEvents(id);
    const name = this.model.get(id)?.name ?? id.slice(0, 8);
    const dialog = new Dialog({
      title: `Firings of "${name}"`,
      body: new Widget({ node: this._historyTable(events, () => dialog.dispose()) }),
      buttons: [Dialog.okButton({ label: 'Close' })]
    });
    await dialog.launch();
  }

  private _historyTable(events: IScheduleEvent[], close: () => void): HTMLElement {
    const node = el('div', 'jp-RaythaScheduleHistory');
    if (!events.length) {
      node.append(el('p', '', 'It has not fired yet.'));
      return node;
    }
    const table = el('table', 'jp-RaythaDetails-table');
    const head = el('tr');
    head.append(...['When', 'Due', 'Event', 'Run or reason'].map(h => el('th', '', h)));
    const body = el('tbody');
    for (const e of events) {
      const tr = el('tr');
      tr.dataset.event = e.event;
      const what = el('td');
      if (e.task_id) {
        const task = this.model.tasks.get(e.task_id);
        const link = el('a', 'jp-RaythaDetails-link', task ? `${task.name} (${task.status})` : e.task_id.slice(0, 8));
        link.href = '#';
        link.dataset.taskId = e.task_id;
        link.addEventListener('click', ev => {
          ev.preventDefault();
          close();
          this._hooks.showTask(e.task_id!);
        });
        what.append(link);
      }
      if (e.reason) {
        what.append(`${e.task_id ? ' · ' : ''}${e.reason}`);
      }
      tr.append(
        el('td', '', localTime(e.ts)),
        el('td', '', e.due ? localTime(e.due) : '—'),
        el('td', 'jp-RaythaScheduleHistory-event', e.event),
        what
      );
      body.append(tr);
    }
    const thead = el('thead');
    thead.append(head);
    table.append(thead, body);
    node.append(table);
    return node;
  }

  private _actions(id: string): IAction[] {
    const schedule = this.model.get(id);
    if (!schedule) {
      return [];
    }
    const paused = schedule.paused;
    return [
      {
        id: paused ? 'resume' : 'pause',
        label: paused ? 'Resume' : 'Pause',
        glyph: paused ? '▶' : '⏸',
        title: paused ? 'Resume: run again on its rule' : 'Pause: no runs until resumed',
        run: () => this._try(paused ? 'resume' : 'pause', () => this.model.setPaused(id, !paused))
      },
      {
        id: 'trigger',
        label: 'Run now',
        glyph: '⏵',
        title: 'Run it now, once, besides its rule',
        run: () =>
          this._try('run', async () => {
            const task = await this.model.trigger(id);
            Notification.info(`"${schedule.name}" started now.`, {
              autoClose: 4000,
              actions: [{ label: 'Show', callback: () => this._hooks.showTask(task.id) }]
            });
          })
      },
      {
        id: 'runs',
        label: 'Runs',
        glyph: '☰',
        title: 'Show its runs in the task list',
        run: async () => this._hooks.showRuns(id)
      },
      {
        id: 'delete',
        label: 'Delete',
        glyph: '✕',
        title: 'Delete this schedule (its runs stay in the task list)',
        run: () =>
          this._try('delete', async () => {
            const current = this.model.get(id) ?? schedule;
            const sure = await confirmDelete(
              'Delete this schedule?',
              `"${current.name}" (${current.rule}) will not run again. ` +
                `Its ${count(current.runs, 'run')} stay in the task list. This cannot be undone.`,
              'Delete'
            );
            if (sure) {
              await this.model.delete(id);
            }
          })
      }
    ];
  }

  private async _try(what: string, body: () => Promise<void>): Promise<void> {
    try {
      await body();
    } catch (err) {
      Notification.error(
        `Could not ${what} the schedule: ${err instanceof Error ? err.message : err}`,
        { autoClose: 8000 }
      );
    }
  }

  private _empty: HTMLElement;
  private _list: HTMLElement;
  private _rows = new Map<string, IRow>();
}

function setText(node: HTMLElement, text: string): void {
  if (node.textContent !== text) {
    node.textContent = text;
  }
}

interface IRow {
  node: HTMLElement;
  name: HTMLElement;
  badge: HTMLElement;
  /** "function" or "notebook". */
  kind: HTMLElement;
  rule: HTMLElement;
  next: HTMLElement;
  last: HTMLElement;
  /** The last run's age ("2 min ago"), ticking. */
  lastWhen?: HTMLElement;
  buttons: HTMLElement;
  key: string;
  lastKey: string;
}
