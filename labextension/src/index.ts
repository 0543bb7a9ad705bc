/**
 * raytha-nb: JupyterLab / Notebook 7 front end for raytha_nb's background tasks.
 * One plugin wires the shared task model to the sidebar panel, the status bar
 * item and notifications.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { PageConfig } from '@jupyterlab/coreutils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';

import { TaskActions } from './actions';
import { TaskModel } from './model';
import { DEFAULT_NOTIFY, INotifySettings, TaskNotifier } from './notify';
import { TasksPanel } from './panel';
import { TASK_MIME_RANK, taskRendererFactory } from './renderer';
import { TaskStatusItem } from './statusbar';
import { tasksIcon } from './icons';

const PLUGIN_ID = 'raytha-nb:plugin';

export namespace CommandIDs {
  export const open = 'raytha-nb:open-panel';
  export const showTask = 'raytha-nb:show-task';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Background Tasks panel, status bar item and notifications for raytha_nb.',
  autoStart: true,
  optional: [ILayoutRestorer, IStatusBar, ISettingRegistry, ICommandPalette, IRenderMimeRegistry],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    statusBar: IStatusBar | null,
    settingRegistry: ISettingRegistry | null,
    palette: ICommandPalette | null,
    rendermime: IRenderMimeRegistry | null
  ) => {
    const model = new TaskModel();
    // Task cell outputs: live from this model's one events stream, ahead of the ipywidget.
    rendermime?.addFactory(taskRendererFactory(model), TASK_MIME_RANK);
    const kernels = app.serviceManager.kernels;
    let running = new Set<string>();
    const actions = new TaskActions(
      model,
      path => app.commands.execute('docmanager:open', { path: serverPath(path) }),
      id => running.has(id) // re-run asks the task's own kernel
    );
    kernels.runningChanged.connect((_, models) => {
      running = new Set(models.map(m => m.id));
      actions.kernelsChanged();
    });
    const panel = new TasksPanel(model, actions);
    app.shell.add(panel, 'left', { rank: 650, type: 'Background Tasks' });
    restorer?.add(panel, 'raytha-nb-tasks');

    app.commands.addCommand(CommandIDs.open, {
      label: 'Show Background Tasks',
      caption: 'Open the Background Tasks panel',
      icon: tasksIcon,
      execute: () => {
        panel.showList();
        app.shell.activateById(panel.id);
      }
    });
    app.commands.addCommand(CommandIDs.showTask, {
      label: 'Show Background Task',
      execute: args => {
        app.shell.activateById(panel.id);
        panel.showTask(String(args.id));
      }
    });
    palette?.addItem({ command: CommandIDs.open, category: 'Background Tasks' });

    const notifier = new TaskNotifier(model, id =>
      void app.commands.execute(CommandIDs.showTask, { id })
    );
    if (settingRegistry) {
      void settingRegistry.load(PLUGIN_ID).then(settings => {
        const apply = () => {
          notifier.settings = {
            ...DEFAULT_NOTIFY,
            ...(settings.composite.notifications as Partial<INotifySettings> | undefined)
          };
        };
        apply();
        settings.changed.connect(apply);
      }, err => console.warn('raytha-nb: could not load settings', err));
    }

    if (statusBar) {
      const item = new TaskStatusItem(model, () => void app.commands.execute(CommandIDs.open));
      statusBar.registerStatusItem(PLUGIN_ID, {
        item,
        align: 'left',
        rank: 5,
        isActive: () => model.activeCount > 0,
        activeStateChanged: model.activeCountChanged
      });
    }

    void model.connect();
  }
};

/**
 * Kernels report their notebook as an absolute path (JPY_SESSION_NAME); the document
 * manager wants it relative to the server's root directory.
 */
export function serverPath(path: string): string {
  let root = PageConfig.getOption('serverRoot').replace(/\/+$/, '');
  if (!path.startsWith('/') || !root) {
    return path;
  }
  if (root.startsWith('~')) {
    // The server shows its home directory as "~": find the rest of the root in the path.
    const home = /^\/(?:root|home\/[^/]+|Users\/[^/]+)/.exec(path);
    if (!home) {
      return path;
    }
    root = home[0] + root.slice(1);
  }
  return path.startsWith(`${root}/`) ? path.slice(root.length + 1) : path;
}

export default plugin;
