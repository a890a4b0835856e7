"""InterFAX REST names (docs/providers/interfax.md), shared by the adapter and the sandbox.

Unconfirmed names are marked; when the real service says otherwise, change them here only.
"""

from __future__ import annotations

BASE_URL = "https://rest.interfax.net"

# Paths; all operation arguments go in the query string.
SEND_PATH = "/outbound/faxes"
FAX_PATH = "/outbound/faxes/{fax_id}"
COMPLETED_PATH = "/outbound/faxes/completed"
SEARCH_PATH = "/outbound/search"
CANCEL_PATH = "/outbound/faxes/{fax_id}/cancel"
BALANCE_PATH = "/accounts/self/ppcards/balance"

PARAM_FAX_NUMBER = "faxNumber"
PARAM_REFERENCE = "reference"
PARAM_IDS = "ids"
PARAM_LIMIT = "limit"
PARAM_OFFSET = "offset"
PARAM_DATE_FROM = "dateFrom"
SEARCH_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # as the .NET client sends dateFrom

# Record fields ("reference" and "faxNumber" appear in newer doc variants only).
FIELD_ID = "id"
FIELD_STATUS = "status"
FIELD_REFERENCE = "reference"
FIELD_PAGES_SENT = "pagesSent"
FIELD_COMPLETION_TIME = "completionTime"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"

# Status codes: < 0 in progress, 0 success, > 0 failed (final).
STATUS_PREPROCESSING = -1
STATUS_READY = -2
STATUS_SENDING = -3
STATUS_WAITING_FOR_CREDIT = -22
STATUS_SUCCESS = 0
STATUS_CANCELLED = 403
STATUS_PARTIAL = 3268

# Error body {"code": int, "message": str, "moreInfo": str | None}.
ERROR_NOT_FOUND = -1005
ERROR_WRONG_STATUS = -162
ERROR_AUTHENTICATION = -1003  # unconfirmed for REST
ERROR_NO_RECIPIENT = -112  # unconfirmed for REST
ERROR_NO_DOCUMENTS = -123  # unconfirmed for REST; also used for an unsupported type
ERROR_TOO_MANY_REQUESTS = -1011  # unconfirmed for REST (HTTP 429 in the sandbox)
ERROR_INTERNAL = -150  # unconfirmed for REST

# Web Feedback (completion callback) form fields; the list past DestinationFax is unconfirmed.
CALLBACK_TRANSACTION_ID = "TransactionID"
CALLBACK_STATUS = "Status"
CALLBACK_PAGES_SENT = "PagesSent"
CALLBACK_TIME_FORMAT = "%d/%m/%Y %H:%M:%S"

# Added for the adapter.
MAX_REFERENCE_LENGTH = 60
BATCH_SIZE = 50  # ids per GET /outbound/search
SEARCH_PAGE = 100  # records per page of a search by reference (unconfirmed maximum)
FIELD_SUBMIT_TIME = "submitTime"
FIELD_DURATION = "duration"
FIELD_UNITS = "units"
FIELD_COST_PER_UNIT = "costPerUnit"
CALLBACK_DURATION = "Duration"  # unconfirmed
CALLBACK_UNITS = "Units"  # unconfirmed
CALLBACK_COST_PER_UNIT = "CostPerUnit"
CALLBACK_SUBMIT_TIME = "SubmitTime"  # unconfirmed
CALLBACK_COMPLETION_TIME = "CompletionTime"
