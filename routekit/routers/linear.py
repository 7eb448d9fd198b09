"""Linear-head router: a regularised linear model over cheap prompt features, trained on pair labels.

    g(q) = w_embᵀ v_q + w_bowᵀ tfidf(q) + w_featᵀ z(q) + b          P(strong wins) = σ(a·g(q) + c)

* ``v_q``: the sentence embedding of the artifact's encoder (the same as MF / SW use);
* ``tfidf(q)``: L2-normalised ``log(1 + count)·idf`` over the encoder tokenizer's word-piece ids
  (a sparse bag of words; the vocabulary and idf weights are stored in the artifact);
* ``z(q)``: a few standardised surface features (:func:`text_features`: length, digits, math
  symbols, lines, numbers, words) that mean-pooled embeddings blur away, clipped to the range seen
  in training (``feat_lo``/``feat_hi``) so that very short or long prompts do not extrapolate;
* optionally (``parts`` in ``linear.npz``; the shipped default has none: they bought nothing measurable,
  docs/quality.md "Round 3") ``w_headᵀ v_head + w_tailᵀ v_tail``: embeddings of a long prompt's first and
  last ``part_chars`` characters (:func:`prompt_parts`), one more encoder pass over those short texts.

``g`` estimates the expected quality gain of the strong over the weak model on the prompt (strong
right and weak wrong = +1, the reverse = −1, ties 0); ``σ(a·g + c)`` maps it to a probability, fitted
on out-of-fold predictions.  Everything is numpy on top of the encoder: one embedding, one tokenizer
pass, a few dot products.  Weights live in ``linear.npz`` (no pickle).  The head is trained for one
pair only (``manifest["pair"]``); other pairs are refused.
"""

from __future__ import annotations

import re

import numpy as np

from routekit.encoders import Encoder, encoder_from_manifest
from routekit.encoders import clean_text as _clean_text
from routekit.errors import BadArtifactError, BadInputError
from routekit.router import EncoderRouter

#: Characters of a prompt that the bag of words and the surface features look at.
MAX_CHARS = 4000
_MATH = frozenset("=+-*/^()<>%$\\")
_NUM = re.compile(r"\d+(?:\.\d+)?")
FEATURE_NAMES = ("log_chars", "digit_frac", "log_digits", "math_frac", "log_math", "log_lines",
                 "log_numbers", "log_words")


def clean_text(text: str) -> str:
    return _clean_text(text, MAX_CHARS)


def prompt_parts(text: str, chars: int) -> tuple[str, str]:
    """The first and the last ~``chars`` characters of a prompt, cut at a space: where a long
    prompt's instruction sits ("Summarise this email: ..." / "... fix the typos above")."""
    head, tail = text[:chars], text[-chars:]
    if len(text) > chars:
        if " " in head[chars // 2:]:
            head = head[:head.rfind(" ")]
        if " " in tail[:chars // 2]:
            tail = tail[tail.find(" ") + 1:]
    return _clean_text(head.strip(), chars), _clean_text(tail.strip(), chars)


def part_texts(prompts: list[str], chars: int) -> tuple[list[int], list[str], list[str]]:
    """Indices of the prompts longer than 2 × ``chars`` characters and their heads and tails
    (:func:`prompt_parts`); shorter prompts are their own head and tail (no extra encoder pass)."""
    long_ = [i for i, p in enumerate(prompts) if len(p) > 2 * chars]
    parts = [prompt_parts(prompts[i], chars) for i in long_]
    return long_, [h for h, _ in parts], [t for _, t in parts]


def text_features(text: str) -> list[float]:
    """Surface features of one (cleaned) prompt, in the order of :data:`FEATURE_NAMES`."""
    n = max(len(text), 1)
    # str.count per character is C speed; for ASCII text isdigit() is exactly 0-9
    digits = sum(map(text.count, "0123456789")) if text.isascii() else sum(c.isdigit() for c in text)
    math = sum(map(text.count, _MATH))
    return [float(np.log1p(len(text))), digits / n, float(np.log1p(digits)), math / n, float(np.log1p(math)),
            float(np.log1p(text.count("\n") + 1)), float(np.log1p(len(_NUM.findall(text)))),
            float(np.log1p(len(text.split())))]


def load_bow_tokenizer(path):
    """The encoder's tokenizer without padding or truncation (for word-piece counts)."""
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:
        raise BadArtifactError(f"{path}: not a valid tokenizer.json ({exc})") from exc
    tok.no_padding()
    tok.no_truncation()
    return tok


def token_ids(tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Word-piece ids of each text without the special tokens ([CLS]/[SEP])."""
    encs = tokenizer.encode_batch(texts, add_special_tokens=False)
    return [np.asarray(e.ids, dtype=np.int64) for e in encs]


def tfidf_rows(ids: list[np.ndarray], col_of_id: np.ndarray, idf: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Sparse L2-normalised tf-idf rows as (columns, values); ids outside the vocabulary are ignored."""
    out = []
    for row in ids:
        row = row[(row >= 0) & (row < len(col_of_id))]
        cols = col_of_id[row]
        cols = cols[cols >= 0]
        if cols.size == 0:
            out.append((cols, np.zeros(0, np.float64)))
            continue
        uniq, counts = np.unique(cols, return_counts=True)
        vals = np.log1p(counts) * idf[uniq]
        out.append((uniq, vals / (np.linalg.norm(vals) + 1e-9)))
    return out


class LinearRouter(EncoderRouter):
    kind = "linear"
    needs_router_section = True
    needs_encoder = True

    @classmethod
    def check_section(cls, c, r: dict, data: dict, models) -> None:
        c.listed_file(r.get("weights", "linear.npz"), "router.weights")

    def __init__(self, manifest, *, providers=None, threads=None, strong=None, weak=None):
        super().__init__(manifest, strong=strong, weak=weak)
        if not self.is_default_pair:
            raise BadInputError(f"router {self.name!r} (kind linear) is trained for "
                                f"{self.default_strong} vs {self.default_weak} only")
        spec = manifest["router"]
        w = manifest.array(spec.get("weights", "linear.npz"))
        if not isinstance(w, dict):
            raise BadArtifactError(f"{manifest.folder}: router.weights must be an .npz archive")
        try:
            self.w_emb = np.asarray(w["w_emb"], np.float64)
            self.w_feat = np.asarray(w["w_feat"], np.float64)
            self.feat_mean = np.asarray(w["feat_mean"], np.float64)
            self.feat_std = np.asarray(w["feat_std"], np.float64)
            bow_ids = np.asarray(w["bow_ids"], np.int64)
            self.bow_idf = np.asarray(w["bow_idf"], np.float64)
            self.w_bow = np.asarray(w["w_bow"], np.float64)
            self.bias, self.scale, self.offset = (float(x) for x in np.asarray(w["affine"], np.float64))
            # optional: raw feature range seen in training; features are clipped to it (no extrapolation)
            files = getattr(w, "files", w)
            self.feat_lo = np.asarray(w["feat_lo"], np.float64) if "feat_lo" in files else None
            self.feat_hi = np.asarray(w["feat_hi"], np.float64) if "feat_hi" in files else None
            # optional: embeddings of a long prompt's two ends (prompt_parts), with their own weights
            self.part_chars = int(np.asarray(w["parts"]).reshape(-1)[0]) if "parts" in files else None
            self.w_head = np.asarray(w["w_head"], np.float64) if self.part_chars is not None else None
            self.w_tail = np.asarray(w["w_tail"], np.float64) if self.part_chars is not None else None
        except (KeyError, TypeError, ValueError) as exc:
            raise BadArtifactError(f"{manifest.folder}: linear weights malformed ({exc})") from exc
        n_feat = (len(FEATURE_NAMES),)
        vectors = {"w_feat": self.w_feat, "feat_mean": self.feat_mean, "feat_std": self.feat_std,
                   "feat_lo": self.feat_lo, "feat_hi": self.feat_hi}
        if (bow_ids.ndim != 1 or not (bow_ids.shape == self.bow_idf.shape == self.w_bow.shape)
                or self.w_emb.ndim != 1 or any(v is not None and v.shape != n_feat for v in vectors.values())
                or np.any(self.feat_std <= 0) or bow_ids.min(initial=0) < 0):
            shapes = ", ".join(f"{k} {v.shape}" for k, v in vectors.items() if v is not None)
            raise BadArtifactError(f"{manifest.path(spec.get('weights', 'linear.npz'))}: linear weights have "
                                   f"inconsistent shapes or values (bow_ids {bow_ids.shape}, bow_idf "
                                   f"{self.bow_idf.shape}, w_bow {self.w_bow.shape}, w_emb {self.w_emb.shape}, "
                                   f"{shapes}; {len(FEATURE_NAMES)} features, feat_std > 0)")
        self.col_of_id = np.full(int(bow_ids.max(initial=-1)) + 1, -1, np.int64)
        self.col_of_id[bow_ids] = np.arange(len(bow_ids))
        self.encoder = encoder_from_manifest(manifest, providers=providers, threads=threads)
        if self.part_chars is not None and (self.part_chars < 1 or self.w_head.shape != self.w_emb.shape
                                            or self.w_tail.shape != self.w_emb.shape):
            raise BadArtifactError(f"{manifest.folder}: linear part weights malformed (parts {self.part_chars}, "
                                   f"w_head {self.w_head.shape}, w_tail {self.w_tail.shape}, w_emb {self.w_emb.shape})")
        if self.w_emb.shape[0] != int(manifest["encoder"].get("dim", self.w_emb.shape[0])):
            raise BadArtifactError(f"{manifest.folder}: w_emb has {self.w_emb.shape[0]} dims, encoder "
                                   f"{manifest['encoder'].get('dim')}")
        # a second, untruncated copy of the tokenizer: only for texts the local encoder cut (parsed on
        # first use, ~20 ms) and for static / remote encoders, which tokenize nothing for us
        self._tokenizer_path = manifest.path(manifest["encoder"]["tokenizer"])
        self._tokenizer = None if isinstance(self.encoder, Encoder) else load_bow_tokenizer(self._tokenizer_path)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_bow_tokenizer(self._tokenizer_path)
        return self._tokenizer

    def gains(self, embeddings: np.ndarray, prompts: list[str], ids: list | None = None) -> np.ndarray:
        """The linear score g (estimated strong-minus-weak quality gain) from embeddings + texts.

        ``ids``: per prompt, its word-piece ids as the encoder already tokenized them (``None``
        entries, or no list, are tokenized here)."""
        texts = [clean_text(p) for p in prompts]
        raw = np.array([text_features(t) for t in texts], np.float64).reshape(len(texts), -1)
        if self.feat_lo is not None and self.feat_hi is not None:
            raw = np.clip(raw, self.feat_lo, self.feat_hi)
        feats = (raw - self.feat_mean) / self.feat_std
        ids = list(ids) if ids is not None and len(ids) == len(texts) else [None] * len(texts)
        todo = [i for i, row in enumerate(ids) if row is None]
        for i, row in zip(todo, token_ids(self.tokenizer, [texts[i] for i in todo]) if todo else ()):
            ids[i] = row
        bow = np.array([vals @ self.w_bow[cols] for cols, vals in tfidf_rows(ids, self.col_of_id, self.bow_idf)])
        # row-wise products, not BLAS matrix-vector (whose kernels change the last bit with the batch
        # size): a prompt's score never depends on its batch-mates
        emb = np.asarray(embeddings, np.float64)
        g = (emb * self.w_emb).sum(axis=1) + bow + (feats * self.w_feat).sum(axis=1) + self.bias
        if self.part_chars is not None:
            head, tail = self.part_embeddings(emb, prompts)
            g = g + (head * self.w_head).sum(axis=1) + (tail * self.w_tail).sum(axis=1)
        return g

    def part_embeddings(self, embeddings: np.ndarray, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of each prompt's first and last ``part_chars`` characters: one more encoder pass
        over those short texts for the prompts longer than twice that, the whole prompt's for the rest."""
        head, tail = np.array(embeddings, np.float64), np.array(embeddings, np.float64)
        long_, heads, tails = part_texts(prompts, self.part_chars)
        if long_:
            pe = np.asarray(self.encoder(heads + tails), np.float64)
            head[long_], tail[long_] = pe[:len(long_)], pe[len(long_):]
        return head, tail

    def scores(self, embeddings: np.ndarray, prompts: list[str], ids: list | None = None) -> np.ndarray:
        g = self.gains(embeddings, prompts, ids)
        return 1.0 / (1.0 + np.exp(-(self.scale * g + self.offset)))

    def score_embeddings(self, embeddings: np.ndarray, prompts: list[str]) -> np.ndarray:
        return self.scores(embeddings, prompts)

    def score(self, prompts: list[str]) -> np.ndarray:
        if not prompts:
            return np.zeros(0)
        if not isinstance(self.encoder, Encoder):  # static / remote encoders: tokenize here
            return self.scores(self.encoder(prompts), prompts)
        ids: list = []
        emb = self.encoder(prompts, token_ids=ids)
        return self.scores(emb, prompts, ids)

    def explain(self, prompt: str, *, threshold: float | None = None, strong_fraction: float | None = None,
                top: int = 12):
        """The ``top`` largest contributions to the logit of the raw win rate (the embedding block, word
        pieces of the tf-idf bag, surface features, the bias) and the threshold in force: a
        :class:`routekit.control.explain.Explanation`."""
        from routekit._validate import as_prompt
        from routekit.control.explain import Contribution, build, check_top, top_contributions

        top = check_top(top)
        text = clean_text(as_prompt(prompt))
        ids: list = []
        if isinstance(self.encoder, Encoder):
            emb = self.encoder([prompt], token_ids=ids)
        else:
            emb = self.encoder([prompt])
        row = ids[0] if ids and ids[0] is not None else token_ids(self.tokenizer, [text])[0]
        a = self.scale
        items = []
        emb = np.asarray(emb, np.float64)
        items.append(Contribution("embedding", "embedding", a * float((emb[0] * self.w_emb).sum())))
        if getattr(self, "part_chars", None) is not None:
            head, tail = self.part_embeddings(emb, [prompt])
            items.append(Contribution("embedding of the first part", "embedding", a * float((head[0] * self.w_head).sum())))
            items.append(Contribution("embedding of the last part", "embedding", a * float((tail[0] * self.w_tail).sum())))
        cols, vals = tfidf_rows([row], self.col_of_id, self.bow_idf)[0]
        if "_id_of_col" not in self.__dict__:
            known = np.flatnonzero(self.col_of_id >= 0)
            self.__dict__["_id_of_col"] = known[np.argsort(self.col_of_id[known])]
        id_of_col = self.__dict__["_id_of_col"]
        for c, v in zip(cols.tolist(), vals.tolist()):
            items.append(Contribution(self.tokenizer.id_to_token(int(id_of_col[c])) or f"#{id_of_col[c]}", "term",
                                      a * v * float(self.w_bow[c]), v))
        raw = np.array(text_features(text), np.float64)
        clipped = np.clip(raw, self.feat_lo, self.feat_hi) if self.feat_lo is not None else raw
        z = (clipped - self.feat_mean) / self.feat_std
        items += [Contribution(n, "feature", a * float(z[i] * self.w_feat[i]), float(raw[i]))
                  for i, n in enumerate(FEATURE_NAMES)]
        logit = sum(c.contribution for c in items) + a * self.bias + self.offset
        items.append(Contribution("bias", "bias", a * self.bias + self.offset))
        shown = top_contributions(items, top)
        terms = [c for c in items if c.group == "term"]
        return build(self, 1.0 / (1.0 + np.exp(-logit)), threshold=threshold, strong_fraction=strong_fraction,
                     logit=logit, contributions=shown,
                     detail={"terms": len(terms), "terms_total": sum(c.contribution for c in terms),
                             "not_shown_total": sum(c.contribution for c in items) - sum(c.contribution for c in shown)})
