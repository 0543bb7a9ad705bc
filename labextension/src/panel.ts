/**
 * The Background Tasks sidebar: a filterable, virtualised list of every task on
 * the server (only the rows in view exist in the DOM), and a details view.
 */
import { Notification } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { ITask, STATUSES, isActive } from './api';
import { TaskActions, actionButtons, confirmDelete } from './actions';
import { TaskDetails } from './details';
import {
  STATUS_GLYPH,
  attemptText,
  basename,
  count,
  el,
  executorBadge,
  percentText,
  runsOn,
  timeLabel,
  waiting
} from './format';
import { tasksIcon } from './icons';
import { ITasksChange, TaskModel } from './model';
import { ScheduleModel } from './schedules';
import { SchedulesView } from './schedulesView';

/** The panel's two views: the task list (and a task's details) and the schedules. */
export type PanelView = 'tasks' | 'schedules';

/** Row height in pixels; fixed so the list can be virtualised by arithmetic. */
export const ROW_HEIGHT = 66;
/** Rows rendered above and below the visible ones. */
const OVERSCAN = 6;

const FILTERS: { value: string; label: string }[] = [
  { value: '', label: 'All statuses' },
  { value: 'active', label: 'Running or waiting' },
  { value: 'finished', label: 'Finished' },
  ...STATUSES.map(s => ({ value: s, label: s[0].toUpperCase() + s.slice(1) }))
];

export class TasksPanel extends Widget {
  constructor(
    readonly model: TaskModel,
    readonly actions: TaskActions,
    readonly schedules: ScheduleModel = new ScheduleModel(model)
  ) {
    super();
    this.id = 'raytha-nb-tasks';
    this.addClass('jp-RaythaPanel');
    this.title.icon = tasksIcon;
    this.title.caption = 'Background Tasks';

    const header = el('div', 'jp-RaythaPanel-header');
    const title = el('h2', 'jp-RaythaPanel-title');
    // "Background " gives way in a narrow sidebar (CSS), so the header stays one line.
    title.append(el('span', 'jp-RaythaPanel-titleLong', 'Background '), 'Tasks');
    title.title = 'Background Tasks';
    header.append(title);
    this._summary = el('span', 'jp-RaythaPanel-summary');
    header.append(this._summary);

    const tabs = el('div', 'jp-RaythaPanel-tabs');
    tabs.setAttribute('role', 'tablist');
    for (const [view, label] of [
      ['tasks', 'Tasks'],
      ['schedules', 'Schedules']
    ] as [PanelView, string][]) {
      const tab = el('button', 'jp-RaythaPanel-tab', label);
      tab.setAttribute('role', 'tab');
      tab.dataset.view = view;
      tab.addEventListener('click', () => this.showView(view));
      tabs.append(tab);
      this._tabs.set(view, tab);
    }
    this._scheduleCount = el('span', 'jp-RaythaPanel-tabCount');
    this._tabs.get('schedules')!.append(this._scheduleCount);

    const toolbar = el('div', 'jp-RaythaPanel-toolbar');
    this._statusFilter = el('select', 'jp-RaythaPanel-statusFilter');
    this._statusFilter.title = 'Show tasks with this status';
    for (const f of FILTERS) {
      const option = el('option', '', f.label);
      option.value = f.value;
      this._statusFilter.append(option);
    }
    this._textFilter = el('input', 'jp-RaythaPanel-textFilter');
    this._textFilter.type = 'search';
    this._textFilter.placeholder = 'Filter tasks';
    this._textFilter.title =
      'Show tasks whose name, task, notebook, info, status, executor, worker or id contains this';
    this._clear = el('button', 'jp-RaythaPanel-clear', 'Clear finished');
    this._clear.title = 'Delete every finished task (complete, error, cancelled, interrupted)';
    toolbar.append(this._textFilter, this._statusFilter, this._clear);
    // The schedule whose runs the list shows (a schedule's "Runs"), clearable.
    this._chip = el('div', 'jp-RaythaPanel-chip');
    this._chip.hidden = true;
    this._chipText = el('span', 'jp-RaythaPanel-chipText');
    const unchip = el('button', 'jp-RaythaPanel-chipClear', '✕');
    unchip.title = 'Show every task again';
    unchip.setAttribute('aria-label', 'Clear the schedule filter');
    unchip.addEventListener('click', () => this.showRuns(null));
    this._chip.append(this._chipText, unchip);
    toolbar.append(this._chip);

    this._banner = el('div', 'jp-RaythaPanel-banner');
    this._retry = el('button', 'jp-RaythaPanel-retry', 'Retry now');
    this._bannerText = el('span');
    this._banner.append(this._bannerText, this._retry);

    this._list = el('div', 'jp-RaythaPanel-list');
    this._list.setAttribute('role', 'list');
    this._spacer = el('div', 'jp-RaythaPanel-spacer');
    this._empty = el('div', 'jp-RaythaPanel-empty');
    this._list.append(this._spacer);

    this._details = new TaskDetails(model, actions, () => this.showList(), id => this.showTask(id), {
      scheduleName: id => this.schedules.get(id)?.name,
      showRuns: id => this.showRuns(id)
    });
    actions.showTask = id => this.showTask(id);
    this._details.hide();
    this._schedulesView = new SchedulesView(this.schedules, {
      showRuns: id => this.showRuns(id),
      showTask: id => this.showTask(id)
    });

    this.node.append(header, tabs, toolbar, this._banner, this._empty, this._list);
    this.node.append(this._details.node, this._schedulesView.node);
    this.showView('tasks');

    this._statusFilter.addEventListener('change', () => this._refilter());
    this._textFilter.addEventListener('input', () => this._refilter());
    this._clear.addEventListener('click', () => void this._clearFinished());
    this._retry.addEventListener('click', () => void this.model.connect());
    this._list.addEventListener('scroll', () => this._scheduleRender());
    model.changed.connect(this._onModelChanged, this);
    actions.changed.connect(this._onActionsChanged, this);
    this.schedules.changed.connect(this._onSchedulesChanged, this);
  }

  get view(): PanelView {
    return this._view;
  }

  /** Switch between the task list and the schedules. */
  showView(view: PanelView): void {
    this._view = view;
    this.toggleClass('jp-mod-schedules', view === 'schedules');
    for (const [name, tab] of this._tabs) {
      tab.setAttribute('aria-selected', String(name === view));
      tab.classList.toggle('jp-mod-current', name === view);
    }
    if (view === 'schedules') {
      this._schedulesView.render();
    } else {
      this._scheduleRender();
    }
  }

  /** The task list showing only a schedule's runs (null: every task again). */
  showRuns(scheduleId: string | null): void {
    this._scheduleFilter = scheduleId;
    this._fillChip();
    this.showList();
    this.showView('tasks');
    this._refilter();
  }

  /** Open the details of one task (from a row, a notification or a command). */
  showTask(id: string): void {
    this.showView('tasks');
    this._details.show();
    this._details.setTask(id);
    this.addClass('jp-mod-details');
  }

  showList(): void {
    this._details.setTask(null);
    this._details.hide();
    this.removeClass('jp-mod-details');
    this._scheduleRender();
  }

  /**
   * The ids of the tasks the filters let through, newest first. Kept between changes:
   * built again only when the tasks held change or a change can move a task in or out.
   */
  visibleIds(): readonly string[] {
    if (this._filtered === null) {
      const status = this._statusFilter.value;
      const text = this._textFilter.value.trim().toLowerCase();
      const schedule = this._scheduleFilter;
      this._filter = status || text || schedule ? { status, text, schedule } : null;
      let ids: readonly string[];
      if (this._filter) {
        ids = this.model.order().filter(id => {
          const task = this.model.get(id);
          return task !== undefined && this._passes(task);
        });
        this._members = new Set(ids);
      } else {
        this._members = null;
        ids = this.model.order(); // no filter: the model's own order, no copy
      }
      this._filtered = this._fold(ids);
    }
    return this._filtered;
  }

  /**
   * Children of a group (`rnb.map`) whose group row is in the list go under it: hidden
   * while it is folded, indented after it (in input order) while it is open.
   */
  private _fold(ids: readonly string[]): readonly string[] {
    const children = new Map<string, string[]>();
    const shown = this._members ?? null;
    for (const id of ids) {
      const group = this.model.get(id)?.group_id;
      if (group && (shown ? shown.has(group) : this.model.get(group) !== undefined)) {
        let list = children.get(group);
        if (!list) {
          children.set(group, (list = []));
        }
        list.push(id);
      }
    }
    this._children = children;
    if (!children.size) {
      return ids;
    }
    const out: string[] = [];
    for (const id of ids) {
      const group = this.model.get(id)?.group_id;
      if (group && children.has(group)) {
        continue;
      }
      out.push(id);
      const mine = children.get(id);
      if (mine && this._expanded.has(id)) {
        for (let i = mine.length - 1; i >= 0; i--) {
          out.push(mine[i]); // newest first in the model: oldest (item 0) first here
        }
      }
    }
    return out;
  }

  /** Open or fold a group's children. */
  toggleGroup(id: string): void {
    if (!this._expanded.delete(id)) {
      this._expanded.add(id);
    }
    this._filtered = null;
    this._scheduleRender();
  }

  /** Whether a task passes the filters the visible list was built with. */
  private _passes(task: ITask): boolean {
    if (!this._filter) {
      return true;
    }
    const { status, text, schedule } = this._filter;
    if (schedule && task.schedule_id !== schedule) {
      return false;
    }
    if (status === 'active' ? !isActive(task) : status === 'finished' ? isActive(task) : status && task.status !== status) {
      return false;
    }
    if (!text) {
      return true;
    }
    return [
      task.name,
      task.task,
      task.notebook,
      task.status_info,
      task.status,
      task.executor,
      task.worker,
      task.id
    ].some(v => v && v.toLowerCase().includes(text));
  }

  protected onAfterShow(): void {
    // Not drawn while hidden: draw now, so the first frame shown has the rows.
    this._renderNow();
    this._startTicker();
  }

  protected onAfterAttach(): void {
    this._scheduleRender();
    this._startTicker();
  }

  protected onBeforeDetach(): void {
    window.clearInterval(this._ticker);
    this._ticker = 0;
  }

  protected onResize(): void {
    this._scheduleRender();
  }

  dispose(): void {
    window.clearInterval(this._ticker);
    this._details.setTask(null); // stops its log polling
    this.model.changed.disconnect(this._onModelChanged, this);
    this.schedules.changed.disconnect(this._onSchedulesChanged, this);
    this.actions.changed.disconnect(this._onActionsChanged, this);
    super.dispose();
  }

  private _onModelChanged(_: TaskModel, change: ITasksChange): void {
    if (change.membership) {
      this._filtered = null;
    } else if (this._filtered !== null && this._members !== null) {
      // Rows are redrawn in place; the list changes only if a task moved in or out.
      for (const id of change.updated) {
        const task = this.model.get(id);
        if (task && this._members.has(id) !== this._passes(task)) {
          this._filtered = null;
          break;
        }
      }
    }
    if (this.isVisible) {
      this._renderNow(); // the model signals once per animation frame: draw in that one
    }
  }

  /** Kernels came or went: rows (and details) rebuild the buttons whose state moved. */
  private _onSchedulesChanged(): void {
    this._fillChip();
    setText(this._scheduleCount, this.schedules.size ? String(this.schedules.size) : '');
    this._details.scheduleChanged();
  }

  /** "Runs of nightly": the schedule the list is filtered to, by its name once known. */
  private _fillChip(): void {
    const id = this._scheduleFilter;
    this._chip.hidden = id === null;
    if (id !== null) {
      const schedule = this.schedules.get(id);
      setText(this._chipText, `Runs of ${schedule ? schedule.name : id.slice(0, 8)}`);
      this._chip.title = schedule ? `${schedule.name}: ${schedule.rule}` : id;
    }
  }

  private _onActionsChanged(): void {
    this._renderRows(false);
    this._details.refreshActions();
  }

  private _refilter(): void {
    this._filtered = null;
    this._list.scrollTop = 0;
    this._scheduleRender();
  }

  /** Elapsed times move every second while something runs. */
  private _startTicker(): void {
    if (!this._ticker) {
      this._ticker = window.setInterval(() => {
        if (this.isVisible && this._view === 'schedules') {
          this._schedulesView.tick();
        } else if (this.isVisible && this.model.activeCount > 0) {
          this._renderRows(true);
          this._details.tick();
        }
      }, 1000);
    }
  }

  private async _clearFinished(): Promise<void> {
    this._clear.disabled = true;
    try {
      const finished = this.model.total - this.model.activeCount;
      const notebooks = new Set<string>();
      for (const id of this.model.order()) {
        const task = this.model.get(id);
        if (task && !isActive(task)) {
          notebooks.add(task.notebook || '');
        }
      }
      const count = `${finished} finished ${finished === 1 ? 'task' : 'tasks'}`;
      const where = notebooks.size > 1 ? ` of ${notebooks.size} notebooks` : '';
      const sure = await confirmDelete(
        'Clear finished tasks?',
        `This deletes ${count}${where} (complete, error, cancelled and interrupted), ` +
          'with their logs and their results, result files included. This cannot be undone.',
        `Delete ${finished}`
      );
      if (!sure) {
        return;
      }
      await this.model.clearFinished();
    } catch (err) {
      // A notification, not the connection banner: the next render hides that.
      Notification.error(
        `Could not clear finished tasks: ${err instanceof Error ? err.message : err}`,
        { autoClose: false }
      );
    } finally {
      this._clear.disabled = false;
    }
  }

  private _scheduleRender(): void {
    if (this._frame) {
      return;
    }
    this._frame = requestAnimationFrame(() => {
      this._frame = 0;
      this._render();
    });
  }

  private _renderNow(): void {
    if (this._frame) {
      cancelAnimationFrame(this._frame);
      this._frame = 0;
    }
    this._render();
  }

  private _render(): void {
    // Geometry first: read after the writes below, it would force a layout each render.
    let view = this._viewport();
    const { state, message } = this.model;
    this.node.dataset.state = state;
    const problem = state === 'unavailable';
    this._banner.classList.toggle('jp-mod-visible', problem);
    setText(this._bannerText, message);
    this._retry.hidden = !problem;

    const tasks = this.visibleIds();
    const active = this.model.activeCount;
    const waits = this.model.waitingCount;
    // Tasks the filters let through (a folded group's children count: they are there).
    const matched = this._members ? this._members.size : this.model.total;
    const shown = matched === this.model.total ? `${matched}` : `${matched} of ${this.model.total}`;
    setText(
      this._summary,
      state === 'connecting'
        ? 'connecting…'
        : problem && !this.model.total
          ? 'unavailable'
          : `${shown} ${this.model.total === 1 ? 'task' : 'tasks'} · ${active - waits} running` +
            (waits ? `, ${waits} waiting` : '')
    );
    this._summary.title = this._summary.textContent ?? '';

    let empty = '';
    if (state === 'connecting') {
      empty = 'Connecting to the task server…';
    } else if (state === 'ready' && tasks.length === 0) {
      empty =
        this._scheduleFilter && !this._statusFilter.value && !this._textFilter.value.trim()
          ? 'No runs of this schedule yet.'
          : this.model.total
            ? 'No task matches the filter.'
            : 'No background tasks yet. Start one with %%background or raytha_nb.enqueue().';
    }
    setText(this._empty, empty);
    this._empty.hidden = !empty;
    this._list.hidden = state === 'connecting' || (problem && tasks.length === 0);
    if (!view.height && !this._list.hidden) {
      view = this._viewport(); // the list was hidden, so had no height: measure it shown
    }
    this._renderRows(false, view);
    this._details.refresh();
  }

  /** Where the list is scrolled to, and how tall it shows (0 while hidden). */
  private _viewport(): { top: number; height: number } {
    return { top: this._list.scrollTop, height: this._list.clientHeight };
  }

  /** Make the DOM hold exactly the rows in view, each up to date. */
  private _renderRows(tickOnly: boolean, view = this._viewport()): void {
    const ids = this.visibleIds();
    this._spacer.style.height = `${ids.length * ROW_HEIGHT}px`;
    const top = view.top;
    const height = view.height || 600;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(ids.length, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
    const keep = new Set<string>();
    const now = Date.now();
    for (let i = first; i < last; i++) {
      const task = this.model.get(ids[i]);
      if (!task) {
        continue; // deleted since the list was built; the next render drops it
      }
      keep.add(task.id);
      let row = this._rows.get(task.id);
      if (!row) {
        row = this._makeRow(task.id);
        this._rows.set(task.id, row);
        this._list.append(row.node);
      }
      row.node.style.transform = `translateY(${i * ROW_HEIGHT}px)`;
      this._fillGroup(row, task);
      if (!tickOnly || isActive(task)) {
        this._fillRow(row, task, now);
      }
    }
    for (const [id, row] of this._rows) {
      if (!keep.has(id)) {
        row.node.remove();
        this._rows.delete(id);
      }
    }
  }

  private _makeRow(id: string): IRow {
    const node = el('div', 'jp-RaythaTask');
    node.setAttribute('role', 'listitem');
    node.dataset.taskId = id;
    node.style.height = `${ROW_HEIGHT}px`;
    node.addEventListener('click', () => this.showTask(id));
    const toggle = el('button', 'jp-RaythaTask-toggle');
    toggle.hidden = true;
    toggle.addEventListener('click', ev => {
      ev.stopPropagation();
      this.toggleGroup(id);
    });
    const glyph = el('span', 'jp-RaythaTask-glyph');
    const name = el('span', 'jp-RaythaTask-name');
    const executor = el('span', 'jp-RaythaTask-executor');
    executor.hidden = true;
    const time = el('span', 'jp-RaythaTask-time');
    const line1 = el('div', 'jp-RaythaTask-line');
    line1.append(toggle, glyph, name, executor, time);
    const bar = el('div', 'jp-RaythaTask-bar');
    const fill = el('div', 'jp-RaythaTask-fill');
    bar.append(fill);
    const percent = el('span', 'jp-RaythaTask-percent');
    const line2 = el('div', 'jp-RaythaTask-line');
    line2.append(bar, percent);
    const state = el('span', 'jp-RaythaTask-state');
    const info = el('span', 'jp-RaythaTask-info');
    const buttons = el('span', 'jp-RaythaTask-actions');
    const line3 = el('div', 'jp-RaythaTask-line');
    line3.append(state, info, buttons);
    node.append(line1, line2, line3);
    return {
      node,
      toggle,
      groupKey: '',
      glyph,
      name,
      executor,
      time,
      fill,
      percent,
      state,
      info,
      buttons,
      key: '',
      actionsKey: ''
    };
  }

  /** A group row's disclosure (its children's count) and a child row's indent. */
  private _fillGroup(row: IRow, task: ITask): void {
    const children = this._children.get(task.id);
    const open = this._expanded.has(task.id);
    const child = Boolean(task.group_id && this._children.has(task.group_id));
    const key = `${children?.length ?? -1}|${open}|${child}`;
    if (key === row.groupKey) {
      return;
    }
    row.groupKey = key;
    row.node.classList.toggle('jp-mod-child', child);
    row.node.classList.toggle('jp-mod-group', children !== undefined);
    row.toggle.hidden = children === undefined;
    if (children) {
      const what = count(children.length, 'task');
      row.toggle.textContent = `${open ? '▾' : '▸'} ${children.length}`;
      row.toggle.title = `${open ? 'Fold' : 'Show'} its ${what}`;
      row.toggle.setAttribute('aria-expanded', String(open));
      row.toggle.setAttribute('aria-label', row.toggle.title);
    }
  }

  private _fillRow(row: IRow, task: ITask, now: number): void {
    setText(row.time, timeLabel(task, now));
    const waits = task.status === 'enqueued' ? '' : waiting(task, now);
    const attempt = task.status === 'processing' ? attemptText(task) : '';
    const key = `${waits}|${attempt}|${task.status}|${task.percent_complete}|${task.task_step}|${task.status_info}|${task.cancel_requested}|${task.result_kind}|${task.name}|${task.executor}|${task.worker}|${task.notebook}`;
    if (key === row.key) {
      this._fillActions(row, task); // kernels may have come or gone
      return;
    }
    row.key = key;
    row.node.dataset.status = task.status;
    row.glyph.textContent = STATUS_GLYPH[task.status] ?? '?';
    row.glyph.title = task.status;
    row.name.textContent = task.name;
    row.name.title = `${task.name} (${task.task})`;
    // Only where it is not the default thread: most rows stay as they were.
    const badge = executorBadge(task);
    row.executor.hidden = !badge;
    row.executor.textContent = badge;
    row.executor.dataset.executor = badge;
    row.executor.title = badge ? `Runs on ${runsOn(task)}` : '';
    const pct = Math.max(0, Math.min(100, task.percent_complete));
    row.fill.style.width = `${pct}%`;
    row.percent.textContent = percentText(task);
    const where = basename(task.notebook);
    const error = [task.error_type, task.error_message].filter(Boolean).join(': ');
    const detail = task.status === 'error' ? error : task.status_info;
    // The status is its own element that never shrinks: only the detail is cut.
    // A wait says itself ("starts in 12 s", "waiting for 2 tasks"): it stands for the status.
    row.state.textContent =
      task.cancel_requested && isActive(task) ? 'cancelling…' : waits || task.status;
    row.state.title = waits ? `${task.status}: ${waits}` : '';
    const parts = [
      attempt,
      task.task_step ? `step ${task.task_step}` : '',
      detail || '',
      where
    ].filter(Boolean);
    row.info.textContent = parts.length ? `· ${parts.join(' · ')}` : '';
    row.info.title = [row.state.textContent, ...parts].join(' · ');
    this._fillActions(row, task);
  }

  private _fillActions(row: IRow, task: ITask): void {
    const actions = this.actions.key(task);
    if (actions !== row.actionsKey) {
      row.actionsKey = actions;
      row.buttons.replaceChildren(...actionButtons(this.actions.for(task), true));
    }
  }

  private _summary: HTMLElement;
  private _statusFilter: HTMLSelectElement;
  private _textFilter: HTMLInputElement;
  private _clear: HTMLButtonElement;
  private _banner: HTMLElement;
  private _bannerText: HTMLElement;
  private _retry: HTMLButtonElement;
  private _list: HTMLElement;
  private _spacer: HTMLElement;
  private _empty: HTMLElement;
  private _details: TaskDetails;
  private _rows = new Map<string, IRow>();
  /** Visible ids (null: build again), which of them (null: all, no filter), and by what. */
  private _filtered: readonly string[] | null = null;
  private _members: Set<string> | null = null;
  private _filter: { status: string; text: string; schedule: string | null } | null = null;
  private _scheduleFilter: string | null = null;
  private _chip: HTMLElement;
  private _chipText: HTMLElement;
  private _tabs = new Map<PanelView, HTMLElement>();
  private _scheduleCount: HTMLElement;
  private _schedulesView: SchedulesView;
  private _view: PanelView = 'tasks';
  /** Group id -> its children in the list (model order); groups opened by the user. */
  private _children = new Map<string, string[]>();
  private _expanded = new Set<string>();
  private _frame = 0;
  private _ticker = 0;
}

/** Set a node's text only when it differs: an equal write still invalidates layout. */
function setText(node: HTMLElement, text: string): void {
  if (node.textContent !== text) {
    node.textContent = text;
  }
}

interface IRow {
  node: HTMLElement;
  /** A group's disclosure: "▸ 5" (hidden on other rows). */
  toggle: HTMLElement;
  groupKey: string;
  glyph: HTMLElement;
  name: HTMLElement;
  /** The executor's badge ("process", "dask", "server"), hidden for threads. */
  executor: HTMLElement;
  time: HTMLElement;
  fill: HTMLElement;
  percent: HTMLElement;
  state: HTMLElement;
  info: HTMLElement;
  buttons: HTMLElement;
  key: string;
  actionsKey: string;
}
