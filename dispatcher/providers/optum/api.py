"""Optum fax management names (docs/providers/optum.md), shared by the adapter and the sandbox.

Most of these are our own proposals ("P" in the notes): the public reference stops short.
When the real reference says otherwise, change them here only.
"""

from __future__ import annotations

# Paths, relative to the configurable base URL.
TOKEN_PATH = "/oauth/token"  # proposed
SEND_PATH = "/fax"
FAX_PATH = "/fax/{fax_id}"
SEARCH_PATH = "/fax/search"
RETRY_PATH = "/fax/{fax_id}/retry"
HOLD_PATH = "/fax/{fax_id}/hold"
REVIVE_PATH = "/fax/{fax_id}/revive"
ATTEMPTS_PATH = "/fax/{fax_id}/attempts"
ATTEMPT_PATH = "/fax/{fax_id}/attempts/{attempt_id}"
WEBHOOK_ENDPOINTS_PATH = "/fax/webhook/endpoints"

TENANT_HEADER = "X-Optum-Tenant-Id"
SIGNATURE_HEADER = "X-Optum-Webhook-Callback-Hmac-Signature"
PROBLEM_CONTENT_TYPE = "application/problem+json"
TOKEN_LIFETIME = 3600

# POST /fax multipart parts (proposed).
PART_FAX_NUMBER = "faxNumber"
PART_METADATA = "metadata"
PART_DOCUMENT = "document"
METADATA_REFERENCE_KEY = "reference"
DOCUMENT_TYPES = ("application/pdf", "image/tiff")
MAX_DOCUMENT_BYTES = 10 * 1024 * 1024

# POST /fax/search body fields (proposed).
SEARCH_FAX_NUMBER = "faxNumber"
SEARCH_FAX_ID = "faxId"
SEARCH_FAX_STATUS = "faxStatus"
SEARCH_FAX_SENT_DATE = "faxSentDate"
SEARCH_SHOW_HISTORY = "showFaxStatusChangeHistory"

# Fax object fields.
FIELD_FAX_ID = "faxId"
FIELD_STATUS = "faxStatus"
FIELD_FAILED_REASON = "failedReason"
FIELD_METADATA = "metadata"
FIELD_PAGES_SENT = "pagesSent"  # proposed addition to the documented 7 fields

# Statuses (FaxSent and FaxFailed confirmed, the rest named in the brief).
STATUS_RECEIVED = "FaxReceived"
STATUS_ATTEMPT_INITIATED = "FaxAttemptInitiated"
STATUS_RETRY = "FaxRetry"
STATUS_RETRY_ATTEMPTED = "FaxRetryAttempted"
STATUS_HELD = "FaxHeld"
STATUS_RECEIVED_FOR_CANCEL = "FaxReceivedForCancel"
STATUS_CANCELLED = "FaxCancelled"
STATUS_SENT = "FaxSent"
STATUS_FAILED = "FaxFailed"
STATUS_WEBHOOK_UPDATE_FAILED = "FaxWebhookUpdateFailed"
TERMINAL_STATUSES = frozenset({STATUS_SENT, STATUS_FAILED, STATUS_CANCELLED})

FAILED_REASONS = (
    "Busy",
    "NoAnswer",
    "InvalidNumber",
    "NotAFaxMachine",
    "TransmissionError",
    "DocumentConversionFailed",
    "InsufficientCredit",
)

# Webhook event envelope (proposed for fax): type = snake_case of the status.
EVENT_SOURCE = "https://sandbox.local/fax"
EVENT_SPEC_VERSION = "1.0"

# Attempt object fields (proposed).
FIELD_IS_MANUAL_RETRY = "isManualRetry"
FIELD_ATTEMPT_STATUS = "attemptStatus"
ATTEMPT_IN_PROGRESS = "InProgress"

# Added for the adapter.
FIELD_CREATED_ON = "createdOn"
FIELD_UPDATED_ON = "updatedOn"
SEARCH_BATCH_SIZE = 50  # ids per POST /fax/search (proposed)
