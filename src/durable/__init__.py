"""durable: durable workflows for asyncio, replayed from an event log, streamed live.

Workflow code: ``@workflow``, ``sleep``, ``now``, ``random``, ``uuid4``, ``create_hook``,
``create_webhook``, ``define_hook``, ``get_writable``, ``get_workflow_metadata``.
Step code: ``@step``, ``get_step_metadata``, ``get_writable``, ``FatalError``, ``RetryableError``.
Outside: ``Runtime``, ``start``, ``get_run``, ``list_runs``, ``resume_hook``, ``resume_webhook``, ``configure``.
"""

from ._api import configure as configure
from ._api import get_run as get_run
from ._api import get_runtime as get_runtime
from ._api import list_runs as list_runs
from ._api import resume_hook as resume_hook
from ._api import resume_webhook as resume_webhook
from ._api import start as start
from ._codec import register_class as register_class
from ._errors import DurableError as DurableError
from ._errors import FatalError as FatalError
from ._errors import HookConflictError as HookConflictError
from ._errors import HookNotFound as HookNotFound
from ._errors import HookSchemaUnknown as HookSchemaUnknown
from ._errors import HookValidationError as HookValidationError
from ._errors import InvalidStoreURL as InvalidStoreURL
from ._errors import NonDeterminismError as NonDeterminismError
from ._errors import NotInStepError as NotInStepError
from ._errors import NotInWorkflowError as NotInWorkflowError
from ._errors import RetryableError as RetryableError
from ._errors import RunCancelled as RunCancelled
from ._errors import RunConflict as RunConflict
from ._errors import RunFailed as RunFailed
from ._errors import RunNotFound as RunNotFound
from ._errors import SerializationError as SerializationError
from ._errors import SideEffectInWorkflowError as SideEffectInWorkflowError
from ._errors import StepFailed as StepFailed
from ._errors import StepTimeout as StepTimeout
from ._errors import StoreCorrupt as StoreCorrupt
from ._errors import StoreError as StoreError
from ._errors import StreamClosedError as StreamClosedError
from ._errors import StreamFailed as StreamFailed
from ._errors import WebhookNotAnswered as WebhookNotAnswered
from ._errors import WebhookResponseTimeout as WebhookResponseTimeout
from ._errors import WorkflowNotFound as WorkflowNotFound
from ._events import Event as Event
from ._events import EventKind as EventKind
from ._hooks import Hook as Hook
from ._hooks import HookDefinition as HookDefinition
from ._hooks import Request as Request
from ._hooks import Response as Response
from ._hooks import ResumeResult as ResumeResult
from ._hooks import Webhook as Webhook
from ._hooks import create_hook as create_hook
from ._hooks import create_webhook as create_webhook
from ._hooks import define_hook as define_hook
from ._run import HookInfo as HookInfo
from ._run import Run as Run
from ._run import RunInfo as RunInfo
from ._run import StepInfo as StepInfo
from ._runtime import Runtime as Runtime
from ._step import StepMetadata as StepMetadata
from ._step import get_step_metadata as get_step_metadata
from ._step import step as step
from ._streams import StreamChunk as StreamChunk
from ._streams import StreamHandle as StreamHandle
from ._streams import StreamWriter as StreamWriter
from ._streams import get_writable as get_writable
from ._workflow import WorkflowMetadata as WorkflowMetadata
from ._workflow import get_workflow_metadata as get_workflow_metadata
from ._workflow import now as now
from ._workflow import random as random
from ._workflow import sleep as sleep
from ._workflow import uuid4 as uuid4
from ._workflow import workflow as workflow

__version__ = "0.1.0"

__all__ = [
    "DurableError", "Event", "EventKind", "FatalError", "Hook", "HookConflictError", "HookDefinition", "HookInfo",
    "HookNotFound", "HookSchemaUnknown", "HookValidationError", "InvalidStoreURL", "NonDeterminismError", "NotInStepError",
    "NotInWorkflowError", "Request", "Response", "ResumeResult", "RetryableError", "Run", "RunCancelled", "RunConflict", "RunFailed",
    "RunInfo", "RunNotFound", "Runtime", "SerializationError", "SideEffectInWorkflowError", "StepFailed", "StepInfo", "StepMetadata", "StepTimeout",
    "StoreCorrupt", "StoreError", "StreamChunk", "StreamClosedError", "StreamFailed", "StreamHandle", "StreamWriter",
    "Webhook", "WebhookNotAnswered", "WebhookResponseTimeout", "WorkflowMetadata", "WorkflowNotFound", "configure", "create_hook",
    "create_webhook", "define_hook", "get_run", "get_runtime", "get_step_metadata", "get_workflow_metadata",
    "get_writable", "list_runs", "now", "random", "register_class", "resume_hook", "resume_webhook", "sleep", "start",
    "step", "uuid4", "workflow",
]
