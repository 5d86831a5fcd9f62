"""durable: durable workflows for asyncio, replayed from an event log, streamed live.

Workflow code: ``@workflow``, ``sleep``, ``now``, ``random``, ``uuid4``, ``create_hook``,
``create_webhook``, ``define_hook``, ``get_writable``, ``get_workflow_metadata``, ``start_child``, ``set_event``,
``patched``, ``deprecate_patch``.
Step code: ``@step``, ``get_step_metadata``, ``get_writable``, ``FatalError``, ``RetryableError``.
Outside: ``Runtime``, ``start``, ``get_run``, ``list_runs``, ``resume_hook``, ``resume_webhook``, ``rerun``,
``configure``.
"""

# Imported for its effect: a Run in a notebook cell shows as a live view. Light (ipywidgets
# loads only when a widget is drawn), and the one import here that is not a re-export.
from . import notebook as _notebook  # noqa: F401
from ._api import configure as configure
from ._api import get_run as get_run
from ._api import get_runtime as get_runtime
from ._api import list_runs as list_runs
from ._api import resume_hook as resume_hook
from ._api import resume_webhook as resume_webhook
from ._api import start as start
from ._client.client import Client as Client
from ._client.projection import HookInfo as HookInfo
from ._client.projection import ResumeResult as ResumeResult
from ._client.projection import RunInfo as RunInfo
from ._client.projection import ScheduleInfo as ScheduleInfo
from ._client.projection import StepInfo as StepInfo
from ._client.retention import GCReport as GCReport
from ._client.run import Run as Run
from ._client.run import rerun as rerun
from ._client.streams import StreamChunk as StreamChunk
from ._core.codec import register_class as register_class
from ._core.errors import ChildFailed as ChildFailed
from ._core.errors import DurableError as DurableError
from ._core.errors import EncryptedValueError as EncryptedValueError
from ._core.errors import EncryptionKeyError as EncryptionKeyError
from ._core.errors import FatalError as FatalError
from ._core.errors import ForkError as ForkError
from ._core.errors import HookConflictError as HookConflictError
from ._core.errors import HookNotFound as HookNotFound
from ._core.errors import HookSchemaUnknown as HookSchemaUnknown
from ._core.errors import HookValidationError as HookValidationError
from ._core.errors import InvalidStoreURL as InvalidStoreURL
from ._core.errors import NameConflict as NameConflict
from ._core.errors import NonDeterminismError as NonDeterminismError
from ._core.errors import NonDeterministicCallError as NonDeterministicCallError
from ._core.errors import NonDeterministicCallWarning as NonDeterministicCallWarning
from ._core.errors import NotInStepError as NotInStepError
from ._core.errors import NotInWorkflowError as NotInWorkflowError
from ._core.errors import RetryableError as RetryableError
from ._core.errors import RunCancelled as RunCancelled
from ._core.errors import RunConflict as RunConflict
from ._core.errors import RunFailed as RunFailed
from ._core.errors import RunNotFound as RunNotFound
from ._core.errors import ScheduleNotFound as ScheduleNotFound
from ._core.errors import SerializationError as SerializationError
from ._core.errors import SideEffectInWorkflowError as SideEffectInWorkflowError
from ._core.errors import StepFailed as StepFailed
from ._core.errors import StepTimeout as StepTimeout
from ._core.errors import StoreCorrupt as StoreCorrupt
from ._core.errors import StoreError as StoreError
from ._core.errors import StoreUnavailable as StoreUnavailable
from ._core.errors import StreamClosedError as StreamClosedError
from ._core.errors import StreamFailed as StreamFailed
from ._core.errors import WebhookNotAnswered as WebhookNotAnswered
from ._core.errors import WebhookResponseTimeout as WebhookResponseTimeout
from ._core.errors import WorkflowNotFound as WorkflowNotFound
from ._core.events import Event as Event
from ._core.events import EventKind as EventKind
from ._core.queues import Queue as Queue
from ._core.queues import QueueState as QueueState
from ._typed_hooks import HookDefinition as HookDefinition
from ._typed_hooks import define_hook as define_hook
from ._worker.runtime import Runtime as Runtime
from ._worker.writers import StreamWriter as StreamWriter
from ._workflow.children import ChildHandle as ChildHandle
from ._workflow.context import StepMetadata as StepMetadata
from ._workflow.context import WorkflowMetadata as WorkflowMetadata
from ._workflow.context import get_step_metadata as get_step_metadata
from ._workflow.context import get_workflow_metadata as get_workflow_metadata
from ._workflow.determinism import now as now
from ._workflow.determinism import random as random
from ._workflow.determinism import sleep as sleep
from ._workflow.determinism import uuid4 as uuid4
from ._workflow.hooks import Hook as Hook
from ._workflow.hooks import Webhook as Webhook
from ._workflow.hooks import create_hook as create_hook
from ._workflow.hooks import create_webhook as create_webhook
from ._workflow.http import Request as Request
from ._workflow.http import Response as Response
from ._workflow.logger import logger as logger
from ._workflow.patches import deprecate_patch as deprecate_patch
from ._workflow.patches import patched as patched
from ._workflow.schedules import Schedule as Schedule
from ._workflow.schedules import schedule as schedule
from ._workflow.step import Step as Step
from ._workflow.step import step as step
from ._workflow.streams import StreamHandle as StreamHandle
from ._workflow.streams import get_writable as get_writable
from ._workflow.values import set_event as set_event
from ._workflow.workflow import Workflow as Workflow
from ._workflow.workflow import start_child as start_child
from ._workflow.workflow import workflow as workflow
from .stores._encrypted import Encryption as Encryption

__version__ = "0.1.0"

__all__ = [
    "ChildFailed", "ChildHandle", "Client", "DurableError", "EncryptedValueError", "Encryption", "EncryptionKeyError",
    "Event", "EventKind", "FatalError", "ForkError", "GCReport", "Hook", "HookConflictError", "HookDefinition", "HookInfo",
    "HookNotFound", "HookSchemaUnknown", "HookValidationError", "InvalidStoreURL", "NameConflict", "NonDeterminismError",
    "NonDeterministicCallError", "NonDeterministicCallWarning", "NotInStepError",
    "NotInWorkflowError", "Queue", "QueueState", "Request", "Response", "ResumeResult", "RetryableError", "Run", "RunCancelled", "RunConflict", "RunFailed",
    "RunInfo", "RunNotFound", "Runtime", "Schedule", "ScheduleInfo", "ScheduleNotFound", "SerializationError", "SideEffectInWorkflowError", "Step", "StepFailed", "StepInfo", "StepMetadata", "StepTimeout",
    "StoreCorrupt", "StoreError", "StoreUnavailable", "StreamChunk", "StreamClosedError", "StreamFailed", "StreamHandle", "StreamWriter",
    "Webhook", "WebhookNotAnswered", "WebhookResponseTimeout", "Workflow", "WorkflowMetadata", "WorkflowNotFound", "configure", "create_hook",
    "create_webhook", "define_hook", "deprecate_patch", "get_run", "get_runtime", "get_step_metadata", "get_workflow_metadata",
    "get_writable", "list_runs", "logger", "now", "patched", "random", "register_class", "rerun", "resume_hook", "resume_webhook",
    "schedule", "set_event", "sleep", "start", "start_child", "step", "uuid4", "workflow",
]

# Public errors name themselves where users import them from (``durable.RunCancelled``), not by
# the private module defining them: in a run's ``error_type``, the CLI, the page, reprs and
# tracebacks. (Pickles and codec references by the new name resolve through this module.)
for _name in __all__:
    _public = globals()[_name]
    if isinstance(_public, type) and issubclass(_public, BaseException) and _public.__module__.startswith("durable._"):
        _public.__module__ = "durable"
del _name, _public
