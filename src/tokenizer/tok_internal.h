/*
 * tok_internal.h — the shapes shared by the tokenizer's files.
 *
 *   tok_util.c     UTF-8 (validation, WHATWG repair), Unicode and JS whitespace,
 *                  byte-level alphabet, growable byte buffers, string->id map
 *   tok_regex.c    tokenizer.json regexes on PCRE2, read as the Rust library's
 *                  Oniguruma reads them (\s, \p{N}, \d, \w, (?i:'s..))
 *   tok_load.c     tokenizer.json / tokenizer_config.json / GPT-2 files -> rm_tok
 *   tok_json.c     fast scan of model.vocab / model.merges (jansson for the rest)
 *   tok_gguf.c     tokenizer.* GGUF keys, written and read as llama.cpp does
 *   tok_bpe.c      the BPE model: merge map, heap merge loop, word cache
 *   tok_encode.c   added-token split, normalizers, pre-tokenizers, post-processor
 *   tok_decode.c   decoders, streaming pieces
 *   tok_chat.c     chat templates
 *   bpe_train.c    BPE training and tokenizer.json writing
 *
 * Byte-level tokenizers keep their vocabulary as raw bytes (the byte-mapped
 * form "Ġ" -> 0x20 is undone at load), so encoding never maps text to the
 * byte alphabet and decoding is a concatenation. The original strings stay
 * available for export (tok->str).
 */
#ifndef RM_TOK_INTERNAL_H
#define RM_TOK_INTERNAL_H

#include "tokenizer/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* ---- byte buffers ------------------------------------------------------- */

typedef struct {
    char *p;
    size_t n, cap;
} tok_buf;

rm_status tok_buf_reserve(tok_buf *b, size_t extra);
rm_status tok_buf_put(tok_buf *b, const void *s, size_t n);
static inline rm_status tok_buf_putc(tok_buf *b, char c) { return tok_buf_put(b, &c, 1); }
void tok_buf_free(tok_buf *b);
/* "<0xAB>" (SentencePiece byte-fallback spelling) -> the byte; false otherwise. */
bool tok_byte_token(const char *s, size_t n, uint8_t *b);


/* Append-only string storage in 1 MiB chunks (pointers stay valid); all
 * token strings of a tokenizer live here and are freed at once. */
typedef struct {
    char **chunks;
    size_t n_chunks, used, cap;
} tok_arena;
/* Copy s[0..n) plus a NUL into the arena; NULL when out of memory. */
char *tok_arena_dup(tok_arena *a, const char *s, size_t n);
void tok_arena_free(tok_arena *a);

/* ---- fast tokenizer.json scan (tok_json.c) ------------------------------ */

typedef struct { const char *s; uint32_t n; int64_t id; } tok_vocab_ent;
typedef struct { const char *a, *b; uint32_t an, bn; } tok_merge_ent;
typedef struct {
    tok_vocab_ent *vocab; size_t n_vocab, cap_vocab;
    tok_merge_ent *merges; size_t n_merges, cap_merges;
    tok_arena strs;              /* strings that had escapes */
    char *reduced; size_t reduced_len; /* the document with vocab -> {}, merges -> [] */
} tok_fast_model;
/* False (and nothing allocated) when the document needs the full parser. */
bool tok_fast_scan(const char *json, size_t len, tok_fast_model *fm);
void tok_fast_free(tok_fast_model *fm);

/* ---- UTF-8 -------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if invalid there. */
size_t tok_utf8_valid_len(const uint8_t *s, size_t n);
/* Decode one valid code point (caller checked validity); sets *len. */
uint32_t tok_utf8_decode(const uint8_t *s, size_t *len);
size_t tok_utf8_encode(uint32_t cp, char out[4]);
/* Append s with invalid sequences replaced by U+FFFD (WHATWG maximal subpart). */
rm_status tok_utf8_repair(const char *s, size_t n, tok_buf *out);
bool tok_utf8_is_valid(const char *s, size_t n);
/* JS String.prototype.trim's whitespace (WhiteSpace + LineTerminator), as
 * the chat templates' reference (the JS port's Jinja) trims. */
bool tok_js_space(uint32_t cp);
/* Unicode White_Space: Rust's char::is_whitespace, which the Rust library's
 * Strip normalizer and added-token lstrip/rstrip trim (has U+0085, lacks
 * U+FEFF, U+180E and U+001C..U+001F). */
bool tok_unicode_space(uint32_t cp);

/* GPT-2 byte <-> code point alphabet. */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp); /* -1 if not in the alphabet */

/* ---- string -> id map (open addressing over ids) ------------------------ */

typedef struct {
    int32_t *slots; /* id or -1 */
    size_t mask;
    size_t count;
} tok_strmap;

uint64_t tok_hash(const void *s, size_t n);

/* ---- regex -------------------------------------------------------------- */

typedef struct {
    pcre2_code *code;      /* the pattern with PCRE2's own property tables */
    pcre2_code *wide;      /* the same widened to the reference's Unicode 16, or NULL when equal */
} tok_regex;

/* Compile a tokenizer.json pattern as the reference reads it (tok_regex.c). */
rm_status tok_regex_compile(const char *pattern, tok_regex *re, const char *what);
/* The compiled pattern to run on s[0..n): wide when s holds a code point
 * that only the widened classes know, else code (faster). */
const pcre2_code *tok_regex_code(const tok_regex *re, const char *s, size_t n);
void tok_regex_free(tok_regex *re);

/* ---- components --------------------------------------------------------- */

typedef enum {
    NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_PREPEND, NORM_REPLACE, NORM_LOWERCASE, NORM_STRIP,
} norm_kind;

typedef struct {
    norm_kind kind;
    char *a; size_t alen;  /* Prepend: text; Replace: literal pattern */
    char *b; size_t blen;  /* Replace: content */
    tok_regex re;          /* Replace with a Regex pattern (re.code != NULL) */
    bool left, right;      /* Strip */
} tok_norm;

typedef enum {
    PRE_SPLIT,       /* regex, behaviour, invert */
    PRE_BYTELEVEL,   /* optional GPT-2 regex + add_prefix_space */
    PRE_METASPACE,   /* replacement, add_prefix_space, prepend_scheme */
    PRE_DIGITS,
    PRE_WSSPLIT,     /* WhitespaceSplit */
} pre_kind;

/* What a Split does with each delimiter (a match, or with invert a gap
 * between matches), as the Rust library's SplitDelimiterBehavior. */
typedef enum {
    SPLIT_ISOLATED,            /* a piece of its own */
    SPLIT_REMOVED,             /* dropped */
    SPLIT_MERGED_WITH_PREVIOUS, /* joined to the piece before it */
    SPLIT_MERGED_WITH_NEXT,    /* joined to the piece after it */
    SPLIT_CONTIGUOUS,          /* adjacent delimiters form one piece */
} split_behavior;

typedef struct {
    pre_kind kind;
    tok_regex re;          /* Split, ByteLevel(use_regex) */
    bool use_regex, add_prefix_space, invert, individual;
    split_behavior behavior;
    char *rep; size_t replen;  /* Metaspace replacement */
    int prepend;           /* 0 always, 1 first, 2 never */
} tok_pre;

typedef enum {
    DEC_BYTELEVEL, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE, DEC_BPE,
} dec_kind;

typedef struct {
    dec_kind kind;
    char *a; size_t alen;  /* Replace pattern / Strip content / Metaspace replacement / BPE suffix */
    char *b; size_t blen;  /* Replace content */
    int start, stop;       /* Strip */
    bool add_prefix_space; /* Metaspace */
} tok_dec;

typedef struct {
    int32_t id;
    char *content; size_t len;
    bool special, lstrip, rstrip;
} tok_added;

/* Added-token trie over bytes: nodes with sorted child edges. */
typedef struct {
    uint32_t first_child, n_child; /* into edges */
    int32_t added;                 /* index into tok->added or -1 */
} tok_trie_node;
typedef struct {
    uint8_t byte;
    uint32_t node;
} tok_trie_edge;

/* Merge map entry: (left, right) -> rank, result. */
typedef struct {
    uint64_t key;   /* (uint64)left << 32 | right; UINT64_MAX = empty */
    int32_t rank, result;
} tok_merge_slot;

struct rm_tok {
    char *name;
    tok_arena strings;     /* every str/bytes/piece below points in here */
    /* vocabulary: id -> bytes (raw bytes for byte-level vocab tokens) */
    int32_t n_ids;
    char **str;            /* as in tokenizer.json */
    char **bytes;          /* the model's working form */
    uint32_t *bytes_len;
    uint8_t *flags;        /* TOKF_* */
    char **piece;          /* rm_tok_piece text (== bytes for byte-level) */
    uint32_t *piece_len;
    tok_strmap map;        /* bytes -> id (model tokens and added tokens) */

    /* BPE model */
    bool byte_level, byte_fallback, fuse_unk, ignore_merges;
    bool sp_split;         /* see tok_sp_split_check in tok_encode.c */
    int32_t unk_id;
    char *end_of_word_suffix; size_t eow_len;
    tok_merge_slot *merges; size_t merge_mask;
    int32_t (*merge_list)[2]; size_t n_merges;
    int32_t byte_id[256];  /* byte-level: id of each byte; SP: id of <0xXX> or -1 */

    /* pipeline */
    tok_norm *norm; size_t n_norm;
    tok_pre *pre; size_t n_pre;
    tok_dec *dec; size_t n_dec;
    int32_t *tmpl_single; size_t n_tmpl_single; /* -1 marks the sequence */
    bool has_template;

    /* added tokens */
    tok_added *added; size_t n_added;
    tok_trie_node *trie; size_t n_trie;
    tok_trie_edge *edges; size_t n_edges;
    uint8_t added_first[256];  /* 1 if some added token starts with this byte */

    /* tokenizer_config.json */
    int32_t bos_id, eos_id, pad_id, cfg_unk_id;
    bool cleanup_spaces;
    char *chat_template;   /* raw Jinja text or NULL */
    char *pipeline_json;   /* normalizer/pre_tokenizer/post_processor/decoder/model options as loaded */
    rm_chat_template chat;
};

enum { TOKF_USED = 1, TOKF_ADDED = 2, TOKF_SPECIAL = 4, TOKF_BYTE = 8 /* <0xXX> */ };

/* tok_util.c */
rm_status tok_strmap_init(tok_strmap *m, size_t expected);
void tok_strmap_free(tok_strmap *m);
/* Insert id under key tok->bytes[id]; an existing equal key keeps the lower
 * position unless replace is true. */
rm_status tok_strmap_put(rm_tok *tok, int32_t id, bool replace);
int32_t tok_strmap_get(const rm_tok *tok, const char *s, size_t n);

/* tok_bpe.c */
rm_status tok_bpe_build_merges(rm_tok *tok);
int32_t tok_merge_lookup(const rm_tok *tok, int32_t l, int32_t r, int32_t *result);
/* Encode one pre-token (bytes of the normalized text) and append ids. */
rm_status tok_bpe_word(const rm_tok *tok, struct rm_tok_scratch *sc, const char *w, size_t n, rm_tok_ids *out);

/* tok_load.c */
rm_status tok_set_token(rm_tok *tok, int32_t id, const char *s, size_t n);
rm_tok *tok_new(const char *name);

/* Build from parsed tokenizer.json (+ config) objects (jansson json_t). */
struct json_t;
rm_status tok_build_json(rm_tok *tok, const struct json_t *root, const struct json_t *cfg);
/* Same, with model.vocab/merges taken from fm (root has them empty). On a
 * vocabulary the fast path cannot mirror (repeated keys) it returns
 * ERR_MISMATCH and sets *retry: parse the whole file with jansson. */
rm_status tok_build_json_fast(rm_tok *tok, const struct json_t *root, const struct json_t *cfg,
                              const tok_fast_model *fm, bool *retry);

/* tok_encode.c / tok_decode.c helpers */
rm_status tok_scratch_get(const rm_tok *tok, rm_tok_ids *out, struct rm_tok_scratch **sc);
rm_status tok_ids_push(rm_tok_ids *out, int32_t id);
void tok_build_trie_free(rm_tok *tok);
rm_status tok_build_trie(rm_tok *tok);
rm_chat_template tok_chat_detect(const char *tmpl);
rm_status tok_build_pieces(rm_tok *tok);
void tok_sp_split_check(rm_tok *tok);

/* Per-caller scratch, private to the tokenizer files. */
struct rm_tok_scratch {
    const rm_tok *owner;
    tok_buf text, norm, norm2, tmp, pieces_buf;
    size_t *sect; size_t cap_sect;                 /* (off,len,added) triples */
    size_t *pieces; size_t n_pieces, cap_pieces;   /* (off,len) pairs into pieces_buf */
    size_t *pieces2; size_t cap_pieces2;
    uint32_t *u32; size_t cap_u32;                 /* NFC workspace */
    pcre2_match_data *md;
    /* BPE workspace */
    struct tok_sym *syms; size_t cap_syms;
    struct tok_heap_item *heap; size_t cap_heap;
    /* word cache: hash -> (key bytes, ids) */
    struct tok_cache_slot *cache; size_t cache_mask, cache_count;
    tok_buf cache_keys;
    int32_t *cache_ids; size_t cache_ids_n, cache_ids_cap;
};

#endif
