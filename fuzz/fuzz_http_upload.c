/*
 * fuzz_http_upload.c — adapter uploads (POST /v1/adapters): the input is
 * the request's Content-Type value, a line end, then the multipart body.
 * It goes through the upload the server runs (src/serve/adapters_api.c
 * over the multipart reader of src/serve/multipart.c), fed in pieces of
 * every size, so a boundary or a header may be split anywhere: boundary,
 * part headers, repeated "file" parts, missing and repeated fields, then
 * the samples JSONL and rm_registry_adapter_add with the files (a PEFT
 * folder or one GGUF LoRA file) into the registry of fuzz_http.h; an
 * adapter that is added is removed again.
 */
#include "fuzz_http.h"

/* One multipart part, as curl -F writes it. */
static size_t part(char *out, const char *boundary, const char *name, const char *filename, const char *data,
                   size_t n) {
    size_t k = (size_t)sprintf(out, "--%s\r\nContent-Disposition: form-data; name=\"%s\"", boundary, name);
    if (filename) k += (size_t)sprintf(out + k, "; filename=\"%s\"\r\nContent-Type: application/octet-stream", filename);
    k += (size_t)sprintf(out + k, "\r\n\r\n");
    memcpy(out + k, data, n);
    k += n;
    return k + (size_t)sprintf(out + k, "\r\n");
}

static char *file_bytes(const char *path, size_t *n) {
    char *t = NULL;
    if (rm_file_read(path, &t, n) != RAMOLE_OK) abort();
    return t;
}

/* Seeds: uploads as curl and Node's fetch (FormData) send them. */
static void write_seeds(void) {
    size_t ng, nc, ns;
    char *gguf = file_bytes(fuzz_http_fixture("a1.gguf"), &ng);
    char *cfg = file_bytes(fuzz_http_fixture("peft/adapter_config.json"), &nc);
    char *st = file_bytes(fuzz_http_fixture("peft/adapter_model.safetensors"), &ns);
    static const char samples[] = "{\"input\": \"add 3 and 4\"}\n{\"input\": \"what is 12 plus 9\"}\n";
    const char *curl_b = "------------------------d74496d66958873e", *node_b = "----formdata-undici-0123456789";
    char *buf = malloc(ng + nc + ns + 8192);
    if (!buf) abort();
    for (int v = 0; v < 6; v++) {
        const char *b = v % 2 ? node_b : curl_b;
        size_t k = (size_t)sprintf(buf, "multipart/form-data; boundary=%s\n", b);
        if (v != 4) k += part(buf + k, b, "name", NULL, "up1", 3);
        if (v == 4) k += part(buf + k, b, "name", NULL, "dup", 3), k += part(buf + k, b, "name", NULL, "dup", 3);
        k += part(buf + k, b, "description", NULL, "uploaded over HTTP", 18);
        k += part(buf + k, b, "visibility", NULL, v == 1 ? "private" : "public", v == 1 ? 7 : 6);
        if (v != 3) k += part(buf + k, b, "samples", "samples.jsonl", samples, sizeof samples - 1);
        if (v == 0 || v == 3 || v == 5) k += part(buf + k, b, "file", "a1.gguf", gguf, ng);
        else {
            k += part(buf + k, b, "file", "adapter_config.json", cfg, nc);
            k += part(buf + k, b, "file", "adapter_model.safetensors", st, ns);
        }
        if (v == 5) k += part(buf + k, b, "file", "a1.gguf", gguf, ng); /* the same file twice */
        k += (size_t)sprintf(buf + k, "--%s--\r\n", b);
        char name[32];
        snprintf(name, sizeof name, "upload%d", v);
        fuzz_seed(name, buf, k);
    }
    /* an empty form (what a client without fields sends) and a quoted boundary */
    static const char empty[] = "multipart/form-data; boundary=----formdata-undici-0\n------formdata-undici-0--\r\n";
    static const char quoted[] = "Multipart/Form-Data; charset=utf-8; boundary=\"a b\"\npreamble\r\n--a b\r\n"
                                 "Content-Disposition: form-data; name=name\r\n\r\nq\r\n--a b--\r\nepilogue";
    fuzz_seed("upload-empty", empty, sizeof empty - 1);
    fuzz_seed("upload-quoted", quoted, sizeof quoted - 1);
    free(buf), rm_free(gguf), rm_free(cfg), rm_free(st);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_init_once();
    setenv("TMPDIR", fuzz_dir(), 1); /* uploads are stored in the harness's scratch folder */
    fuzz_http *h = fuzz_http_get();
    (void)h;
    if (fuzz_seed_dir()) {
        write_seeds();
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_http_upload_one(data, size);
    return 0;
}
