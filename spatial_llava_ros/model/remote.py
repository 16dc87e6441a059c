"""A resolver backed by a model someone already serves (vLLM, SGLang, Ollama, transformers serve).

One GPU server answers a fleet of robots; each robot sends the marked frame (PNG or JPEG,
base64) with the same prompt as the local path (config/prompt.yaml) and gets back the same
``Resolution``, so the pipeline, the nodes, abstention and goals do not change.

Scoring, probed once per server (the first query tries each in turn; a 4xx answer means
"not here") unless ``scoring`` names one:

1. ``systemone``: ``POST /v1/systemone`` (``transformers serve``), a typed ``choice``
   question whose options are marks 1-9; the server returns a probability for each from
   one forward pass (the logits of the label tokens after the prompt). It reads the FIRST
   answer token only, so it serves frames whose marks are all 1-9 (single tokens); others
   go to the next path. Its probabilities are those of the answer's digit, without the
   end-of-sequence factor that the local resolver also scores.
2. ``logprobs``: chat completions that return the log-probability of every prompt token
   (vLLM's ``prompt_logprobs``): one request per mark with the whole answer ("12" and
   ``</s>``) as the assistant turn, so multi-digit ids are scored exactly, digit by digit,
   as the local resolver does; then normalised over the marks in view.
3. ``generate``: plain generation, constrained to the mark ids with the server's
   structured-output ``choice`` where it takes one (vLLM), parsed otherwise. The result
   has no probabilities (``Resolution.probabilities`` False, confidence NaN).

Faults never hang the caller: every request runs under the query's deadline (``timeout``),
retries with backoff stay inside it, and each failure is a ``RemoteError`` with its code
(``server_unreachable``, ``server_timeout``, ``server_error``, ``bad_answer``), which the
pipeline turns into a failed result with that code. In-flight requests are bounded per
resolver (``max_in_flight``), so several nodes can share one server.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from spatial_llava_ros.errors import InputError, ResolveError
from spatial_llava_ros.model.image import check_image, pad_to_square
from spatial_llava_ros.model.prompt import IMAGE_PLACEHOLDER, PromptTemplate
from spatial_llava_ros.model.resolver import (
    Resolution,
    check_marks,
    check_queries,
    frame_key,
)

SERVER_UNREACHABLE = 'server_unreachable'
SERVER_TIMEOUT = 'server_timeout'
SERVER_ERROR = 'server_error'
BAD_ANSWER = 'bad_answer'
REMOTE_CODES = (SERVER_UNREACHABLE, SERVER_TIMEOUT, SERVER_ERROR, BAD_ANSWER)

SCORING_MODES = ('auto', 'systemone', 'logprobs', 'generate')
PROBE_ORDER = ('systemone', 'logprobs', 'generate')
IMAGE_FORMATS = ('png', 'jpeg')
# LLaVA-1.5 pads frames to square with the CLIP mean before its processor; the server's
# processor would centre-crop instead, cutting off marks near the edges.
CLIP_MEAN_FILL = (123, 117, 104)  # round(255 * OPENAI_CLIP_MEAN)
SYSTEMONE_MAX_MARK = 9
_IMAGE_KEY = '[[marked_frame]]'  # where the image goes in a /v1/systemone prompt
_UNSUPPORTED = (400, 404, 405, 422, 501)  # "this server has no such path / field"
_RETRYABLE = (408, 409, 429, 500, 502, 503, 504)
_MARK_RE = re.compile(r'\d+')

log = logging.getLogger(__name__)


class RemoteError(ResolveError):
    """A server fault, with the failure code the pipeline reports (``REMOTE_CODES``)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class _UnsupportedError(Exception):
    """The server has no such endpoint or field: try the next scoring path."""


@dataclass(frozen=True)
class RemoteConfig:
    """Where the model is served and how to talk to it (node parameters of the same names)."""

    server_url: str
    server_model: str = ''  # '' = the first model the server lists (GET /v1/models)
    api_key_env: str = ''  # name of the environment variable holding the API key
    timeout: float = 10.0  # seconds per query, retries included
    max_in_flight: int = 4  # concurrent HTTP requests of this resolver
    scoring: str = 'auto'
    image_format: str = 'png'
    jpeg_quality: int = 90
    retries: int = 2  # extra tries after a retryable fault, inside the deadline

    def __post_init__(self) -> None:
        url = (self.server_url or '').strip()
        if not re.match(r'^https?://[^/\s]+', url):
            raise InputError(f'server_url must be http(s)://host[:port][/v1], got '
                             f'{self.server_url!r}')
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise InputError(f'timeout must be > 0 s, got {self.timeout}')
        if self.max_in_flight < 1:
            raise InputError(f'max_in_flight must be >= 1, got {self.max_in_flight}')
        if self.scoring not in SCORING_MODES:
            raise InputError(f'scoring must be one of {list(SCORING_MODES)}, got '
                             f'{self.scoring!r}')
        if self.image_format not in IMAGE_FORMATS:
            raise InputError(f'image_format must be one of {list(IMAGE_FORMATS)}, got '
                             f'{self.image_format!r}')
        if self.retries < 0:
            raise InputError(f'retries must be >= 0, got {self.retries}')

    @property
    def base_url(self) -> str:
        """The OpenAI base URL: ``server_url`` with ``/v1`` added when it has no path."""
        url = self.server_url.strip().rstrip('/')
        return url if url.endswith('/v1') else url + '/v1'

    def api_key(self) -> str:
        """The key from ``api_key_env`` (never stored in params files nor logged)."""
        if not self.api_key_env:
            return 'EMPTY'  # vLLM, SGLang, Ollama, transformers serve take any key by default
        key = os.environ.get(self.api_key_env)
        if not key:
            raise InputError(f'api_key_env names {self.api_key_env!r}, which is not set in '
                             'the environment')
        return key


REMOTE_PARAMS = ('server_url', 'server_model', 'api_key_env', 'timeout', 'max_in_flight',
                 'scoring')


def config_from_params(get: Callable[[str], object]) -> RemoteConfig:
    """RemoteConfig from node parameters of the same names (``get(name)`` reads one).

    The API key is checked here (configure fails when ``api_key_env`` names an unset
    variable) but not kept: it is read again from the environment when the client is made.
    """
    cfg = RemoteConfig(**{name: get(name) for name in REMOTE_PARAMS})
    cfg.api_key()
    return cfg


def chat_pieces(template: PromptTemplate, marks: tuple[int, ...], query: str) -> tuple[str, str]:
    """(system, user text) whose chat rendering is the local prompt, token for token.

    The package's chat template (model/chat_template.py) renders ``{system} USER: <image>\\n
    {text} ASSISTANT:``; the local prompt must have that shape to be sent as chat.
    """
    text = template.frame_text(list(marks)) + template.query_text(query)
    head, _, tail = text.partition(IMAGE_PLACEHOLDER)
    want_head, end = f'{template.system} USER: ', ' ASSISTANT:'
    if head != want_head or not tail.startswith('\n') or not tail.endswith(end):
        raise InputError('the prompt template is not a vicuna_v1 conversation ("{system} USER: '
                         '<image>\\n... ASSISTANT:"), so it cannot be sent to a chat server')
    return template.system, tail[1:-len(end)]


def encode_image(image: np.ndarray, fmt: str = 'png', quality: int = 90) -> str:
    """Base64 of the frame padded to square (as LLaVA-1.5 does), PNG (exact) or JPEG."""
    import cv2

    square = pad_to_square(check_image(image), CLIP_MEAN_FILL)
    bgr = cv2.cvtColor(square, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == 'jpeg' else []
    ok, buf = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png', bgr, params)
    if not ok:
        raise InputError(f'could not encode the frame {image.shape} as {fmt}')
    return base64.b64encode(buf.tobytes()).decode('ascii')


def parse_mark(text: str, marks: tuple[int, ...]) -> int:
    """The mark a generated answer names: its first number, which must be a mark in view."""
    found = _MARK_RE.findall(text or '')
    if not found:
        raise RemoteError(BAD_ANSWER, f'the server answered {text[:60]!r}: no mark number '
                          f'(marks in view: {list(marks)})')
    mark = int(found[0])
    if mark not in marks:
        raise RemoteError(BAD_ANSWER, f'the server answered mark {mark}, not in view '
                          f'(marks: {list(marks)})')
    return mark


class RemoteResolver:
    """``score`` / ``score_batch`` like ``model.resolver.Resolver``, over an HTTP server."""

    device = 'remote'

    def __init__(self, config: RemoteConfig, template: PromptTemplate | None = None,
                 abstain_threshold: float = 0.0,
                 on_log: Callable[[str], None] | None = None) -> None:
        try:
            import openai
        except ImportError as exc:
            raise ModuleNotFoundError(
                "the remote resolver needs the 'serve' extra: pip install "
                "'spatial_llava_ros[serve]'", name='openai') from exc
        if not 0.0 <= abstain_threshold <= 1.0:
            raise InputError(f'abstain_threshold must be in [0, 1], got {abstain_threshold}')
        self.config = config
        self.template = template or PromptTemplate.load()
        self.abstain_threshold = float(abstain_threshold)
        self._log = on_log or log.info
        self._openai = openai
        self._client = openai.OpenAI(base_url=config.base_url, api_key=config.api_key(),
                                     timeout=config.timeout, max_retries=0)
        self._slots = threading.BoundedSemaphore(config.max_in_flight)
        # queries of a batch, and the requests of one query (one per mark): two pools, so a
        # query never waits for a worker that its own requests hold
        self._pool = ThreadPoolExecutor(config.max_in_flight, thread_name_prefix='remote_q')
        self._requests = ThreadPoolExecutor(config.max_in_flight, thread_name_prefix='remote_r')
        self._lock = threading.Lock()
        self._model = config.server_model
        self._supported: dict[str, bool] = {}
        self._probed = config.scoring != 'auto'
        self._probe_lock = threading.Lock()
        self._structured_choice: bool | None = None
        self._last_frame: tuple[str, str] | None = None  # (frame key, base64)
        self.scoring = config.scoring if config.scoring != 'auto' else ''  # the path in use

    def describe(self) -> str:
        """One log line: where and how (no key)."""
        return (f'remote resolver: {self.config.base_url}, model '
                f'{self._model or "(first listed)"}, scoring {self.scoring or "auto (probe)"}, '
                f'timeout {self.config.timeout:g} s, max_in_flight {self.config.max_in_flight}')

    def forget_frames(self) -> None:
        """The Resolver's cache hook: drop the last frame's encoding (the server keeps its own)."""
        with self._lock:
            self._last_frame = None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._requests.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    # ---- public API (the Resolver's) -------------------------------------------------------

    def score(self, image: np.ndarray, mark_ids: list[int], query: str) -> Resolution:
        """Probability of every mark in view for one query, from the server."""
        return self.score_batch(image, mark_ids, [query])[0]

    def score_batch(self, image: np.ndarray, mark_ids: list[int],
                    queries: list[str]) -> list[Resolution]:
        """Score queries on one frame; they go to the server concurrently (max_in_flight)."""
        check_image(image)
        marks = check_marks(mark_ids)
        queries = check_queries(queries)
        deadline = time.monotonic() + self.config.timeout
        b64 = self._frame_b64(image, marks)
        if len(queries) == 1:
            return [self._score_one(b64, marks, queries[0], deadline)]
        futures = [self._pool.submit(self._score_one, b64, marks, q, deadline) for q in queries]
        return [f.result() for f in futures]

    # ---- scoring paths ---------------------------------------------------------------------

    def _score_one(self, b64: str, marks: tuple[int, ...], query: str,
                   deadline: float) -> Resolution:
        system, text = chat_pieces(self.template, marks, query)
        if self._probed:
            return self._try_modes(b64, system, text, marks, query, deadline)
        # one query probes the server; the others of a batch wait for it (inside their deadline)
        if not self._probe_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise RemoteError(SERVER_TIMEOUT, f'still probing {self.config.base_url} at the '
                              f'{self.config.timeout:g} s deadline')
        try:
            return self._try_modes(b64, system, text, marks, query, deadline)
        finally:
            self._probe_lock.release()

    def _try_modes(self, b64, system, text, marks, query, deadline) -> Resolution:
        model = self._server_model(deadline)
        refused = []
        for mode in self._modes(marks):
            try:
                if mode == 'systemone':
                    res = self._systemone(model, b64, marks, query, deadline)
                elif mode == 'logprobs':
                    res = self._logprobs(model, b64, system, text, marks, query, deadline)
                else:
                    res = self._generate(model, b64, system, text, marks, query, deadline)
            except _UnsupportedError as exc:
                refused.append(f'{mode}: {exc}')
                if self.config.scoring != 'auto':  # a forced path is not probed: report it
                    break
                with self._lock:
                    self._supported[mode] = False
                self._log(f'scoring: {mode} not available at {self.config.base_url} ({exc}); '
                          'trying the next path')
                continue
            with self._lock:
                self._probed = True
                if not self._supported.get(mode):
                    self._supported[mode] = True
                    self.scoring = mode
                    self._log(f'scoring: {_MODE_NAMES[mode]} at {self.config.base_url} '
                              f'(model {model})')
            return res
        raise RemoteError(SERVER_ERROR, f'{self.config.base_url} (model {model}) refused '
                          f'every scoring path: {"; ".join(refused) or "none left"}')

    def _modes(self, marks: tuple[int, ...], all_modes: bool = False) -> list[str]:
        if self.config.scoring != 'auto':
            forced = self.config.scoring
            if forced == 'systemone' and max(marks) > SYSTEMONE_MAX_MARK:
                return ['generate']  # a two-digit mark is not one label token
            return [forced]
        with self._lock:
            modes = [m for m in PROBE_ORDER if all_modes or self._supported.get(m) is not False]
        if max(marks) > SYSTEMONE_MAX_MARK:
            modes = [m for m in modes if m != 'systemone']
        return modes

    def _systemone(self, model, b64, marks, query, deadline) -> Resolution:
        prompt = (self.template.frame_text(list(marks)) + self.template.query_text(query))
        body = {
            'model': model,
            'state': {'prompt': prompt.replace(IMAGE_PLACEHOLDER, _IMAGE_KEY)},
            'questions': {'mark': {
                'type': 'choice', 'instructions': query,
                'criteria': {str(m): None for m in range(1, SYSTEMONE_MAX_MARK + 1)}}},
            'assets': {_IMAGE_KEY: {'type': 'image', 'format': self.config.image_format,
                                    'data_base64': b64}},
        }
        out = self._call(lambda t: self._client.post('/systemone', body=body, cast_to=object,
                                                     options={'timeout': t}), deadline)
        try:
            probs = out['answers']['mark']['probabilities']
            p = [float(probs[str(m)]) for m in marks]
        except (KeyError, TypeError, ValueError) as exc:
            raise RemoteError(BAD_ANSWER, f'/v1/systemone answer has no probability per mark '
                              f'{list(marks)}: {_short(out)}') from exc
        return self._resolution(query, marks, p, 'systemone')

    def _messages(self, b64: str, system: str, text: str) -> list[dict]:
        return [
            {'role': 'system', 'content': system},
            {'role': 'user', 'content': [
                {'type': 'image_url', 'image_url': {'url': self._data_url(b64)}},
                {'type': 'text', 'text': text}]},
        ]

    def _logprobs(self, model, b64, system, text, marks, query, deadline) -> Resolution:
        messages = self._messages(b64, system, text)

        def base(t):
            return self._client.chat.completions.create(
                model=model, messages=messages, max_tokens=1, temperature=0.0,
                extra_body={'prompt_logprobs': 0}, timeout=t)

        def one(mark):
            answer = self.template.answer_text(mark)
            content = answer[1:] if answer.startswith(' ') else answer
            msgs = messages + [{'role': 'assistant', 'content': content}]
            return self._call(lambda t: self._client.chat.completions.create(
                model=model, messages=msgs, max_tokens=1, temperature=0.0,
                extra_body={'prompt_logprobs': 0, 'add_generation_prompt': False,
                            'continue_final_message': False, 'return_token_ids': True},
                timeout=t), deadline)

        known = self._supported.get('logprobs')
        first_f = self._requests.submit(self._call, base, deadline)
        if not known:  # probing: one request first, so a refusing server costs one
            first_f.result()
        futures = [self._requests.submit(one, m) for m in marks]
        first = first_f.result()
        if _field(first, 'prompt_logprobs') is None:
            for f in futures:
                f.cancel()
            raise _UnsupportedError('chat completions return no prompt_logprobs')
        try:
            n_base = int(first.usage.prompt_tokens)
        except (AttributeError, TypeError, ValueError) as exc:
            raise RemoteError(BAD_ANSWER, f'chat completion has no usage.prompt_tokens: '
                              f'{_short(first)}') from exc
        lls = [_answer_logprob(f.result(), n_base, m) for m, f in zip(marks, futures)]
        top = max(lls)
        w = [math.exp(ll - top) for ll in lls]
        p = [x / sum(w) for x in w]
        return self._resolution(query, marks, p, 'logprobs', lls)

    def _generate(self, model, b64, system, text, marks, query, deadline) -> Resolution:
        messages = self._messages(b64, system, text)
        choices = [str(m) for m in marks]

        def call(structured):
            extra = {'structured_outputs': {'choice': choices}} if structured else None

            def request(t):
                return self._client.chat.completions.create(
                    model=model, messages=messages, max_tokens=4, temperature=0.0,
                    extra_body=extra, timeout=t)
            return self._call(request, deadline)

        if self._structured_choice is not False:
            try:
                out = call(True)
                self._structured_choice = True
            except _UnsupportedError:
                self._structured_choice = False
                self._log('scoring: generation without structured choice (the server refused '
                          'structured_outputs); answers are parsed')
                out = call(False)
        else:
            out = call(False)
        try:
            answer = out.choices[0].message.content or ''
        except (AttributeError, IndexError, TypeError) as exc:
            raise RemoteError(BAD_ANSWER, f'chat completion has no message: {_short(out)}') \
                from exc
        mark = parse_mark(answer, marks)
        return Resolution(query=query, best_id=mark, confidence=float('nan'), scores={},
                          ranked=[(mark, float('nan'))], abstained=False,
                          reason='', probabilities=False, scoring='generate')

    # ---- plumbing ---------------------------------------------------------------------------

    def _resolution(self, query, marks, probs, mode, lls=None) -> Resolution:
        total = sum(probs)
        if not (total > 0 and all(math.isfinite(x) and x >= 0 for x in probs)):
            raise RemoteError(BAD_ANSWER, f'{mode}: probabilities {probs} for marks '
                              f'{list(marks)} cannot be normalised')
        probs = [x / total for x in probs]
        scores = dict(zip(marks, probs))
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        best, conf = ranked[0]
        abstained = conf < self.abstain_threshold
        reason = (f'best mark {best} has p={conf:.3f} < threshold {self.abstain_threshold:.3f} '
                  f'over {len(marks)} marks' if abstained else '')
        if lls is None:
            lls = [math.log(x) if x > 0 else -math.inf for x in probs]
        return Resolution(query=query, best_id=None if abstained else best, confidence=conf,
                          scores=scores, ranked=ranked, abstained=abstained, reason=reason,
                          log_likelihoods=dict(zip(marks, lls)), scoring=mode)

    def _frame_b64(self, image: np.ndarray, marks: tuple[int, ...]) -> str:
        key = frame_key(image, marks)
        with self._lock:
            if self._last_frame is not None and self._last_frame[0] == key:
                return self._last_frame[1]
        b64 = encode_image(image, self.config.image_format, self.config.jpeg_quality)
        with self._lock:
            self._last_frame = (key, b64)
        return b64

    def _data_url(self, b64: str) -> str:
        return f'data:image/{self.config.image_format};base64,{b64}'

    def _server_model(self, deadline: float) -> str:
        if self._model:
            return self._model
        listed = self._call(lambda t: self._client.models.list(timeout=t), deadline)
        ids = [m.id for m in getattr(listed, 'data', [])]
        if not ids:
            raise RemoteError(SERVER_ERROR, f'{self.config.base_url}/models lists no model; '
                              'set server_model')
        self._model = ids[0]
        self._log(f'remote resolver: {self.config.base_url} serves {ids}; using {ids[0]!r}')
        return self._model

    def _call(self, request: Callable[[float], object], deadline: float):
        """Run one HTTP request under the deadline, retrying retryable faults with backoff."""
        oa = self._openai
        attempt, last, code = 0, '', None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:  # the last try's fault names it (a refused connect stays unreachable)
                raise RemoteError(code or SERVER_TIMEOUT, f'no answer from '
                                  f'{self.config.base_url} within the {self.config.timeout:g} s '
                                  f'deadline after {attempt} tries{last}')
            if not self._slots.acquire(timeout=left):
                raise RemoteError(SERVER_TIMEOUT, f'{self.config.max_in_flight} requests '
                                  f'already in flight for {self.config.timeout:g} s')
            started = time.monotonic()
            try:
                return request(max(0.05, deadline - time.monotonic()))
            except oa.APITimeoutError:
                code, last = SERVER_TIMEOUT, (f' (last try: no answer in '
                                              f'{time.monotonic() - started:.2f} s)')
            except oa.APIConnectionError as exc:
                code, last = SERVER_UNREACHABLE, f' (last try: {_cause(exc)})'
            except oa.APIStatusError as exc:
                status = exc.status_code
                detail = f'HTTP {status}: {_short(_body(exc))}'
                if status in _UNSUPPORTED:
                    raise _UnsupportedError(detail) from None
                if status not in _RETRYABLE:
                    raise RemoteError(SERVER_ERROR, f'{self.config.base_url} answered {detail}') \
                        from None
                code, last = SERVER_ERROR, f' (last try: {detail})'
            except oa.APIResponseValidationError as exc:
                raise RemoteError(BAD_ANSWER, f'malformed answer from {self.config.base_url}: '
                                  f'{_short(exc)}') from None
            except (ValueError, json.JSONDecodeError) as exc:
                raise RemoteError(BAD_ANSWER, f'malformed answer from {self.config.base_url}: '
                                  f'{type(exc).__name__}: {_short(exc)}') from None
            finally:
                self._slots.release()
            attempt += 1
            left = deadline - time.monotonic()
            if attempt > self.config.retries or left <= 0:
                what = {SERVER_TIMEOUT: 'no answer from', SERVER_UNREACHABLE: 'cannot reach',
                        SERVER_ERROR: 'error from'}[code]
                raise RemoteError(code, f'{what} {self.config.base_url} after {attempt} tries '
                                  f'in {self.config.timeout - max(0.0, left):.2f} s (deadline '
                                  f'{self.config.timeout:g} s){last}')
            time.sleep(min(left, 0.1 * 2 ** (attempt - 1)))


_MODE_NAMES = {
    'systemone': 'typed decisions via /v1/systemone',
    'logprobs': 'logprobs via chat completions (prompt_logprobs)',
    'generate': 'generation via chat completions (no probabilities)',
}


def _answer_logprob(out, n_base: int, mark: int) -> float:
    """Sum of the log-probabilities of the answer tokens (after the first ``n_base``)."""
    plp = _field(out, 'prompt_logprobs')
    ids = _field(out, 'prompt_token_ids')
    if not isinstance(plp, list) or len(plp) <= n_base:
        raise RemoteError(BAD_ANSWER, f'mark {mark}: prompt_logprobs has '
                          f'{len(plp) if isinstance(plp, list) else plp!r} entries, the prompt '
                          f'before the answer {n_base}')
    total = 0.0
    for i in range(n_base, len(plp)):
        entry = plp[i]
        if not isinstance(entry, dict) or not entry:
            raise RemoteError(BAD_ANSWER, f'mark {mark}: prompt_logprobs[{i}] is {entry!r}')
        if isinstance(ids, list) and len(ids) == len(plp):
            item = entry.get(str(ids[i]), entry.get(ids[i]))
        elif len(entry) == 1:
            item = next(iter(entry.values()))
        else:
            item = None
        if item is None:
            raise RemoteError(BAD_ANSWER, f'mark {mark}: cannot tell the prompt token among '
                              f'{len(entry)} entries at position {i} (no prompt_token_ids)')
        lp = item.get('logprob') if isinstance(item, dict) else getattr(item, 'logprob', None)
        if not isinstance(lp, (int, float)) or math.isnan(lp):
            raise RemoteError(BAD_ANSWER, f'mark {mark}: logprob {lp!r} at position {i}')
        total += float(lp)
    return total


def _field(obj, name: str):
    """An engine-specific field of an openai response object (kept in its model_extra)."""
    value = getattr(obj, name, None)
    if value is None:
        value = (getattr(obj, 'model_extra', None) or {}).get(name)
    return value


def _body(exc) -> object:
    body = getattr(exc, 'body', None)
    return body if body is not None else getattr(exc, 'message', '')


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return f'{type(cause).__name__}: {_short(cause)}' if cause is not None else _short(exc)


def _short(obj, n: int = 160) -> str:
    text = obj if isinstance(obj, str) else (json.dumps(obj) if isinstance(obj, (dict, list))
                                             else str(obj))
    text = ' '.join(text.split())
    return text if len(text) <= n else text[: n - 3] + '...'
