//! Field encryption throughput next to raw `ring` AES-256-GCM on the same buffers, in the same
//! run. Run with `cargo bench --bench crypto`. Prints figures; asserts nothing.
//!
//! The raw baseline reuses one prepared key and a counter nonce: it is the ceiling. The cellule
//! path draws a random nonce, builds the key schedule, binds the associated data and frames the
//! ciphertext, as every stored field does.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cellule::crypto::{DataKey, FieldContext};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

fn measure(mut f: impl FnMut()) -> f64 {
    // Warm up, then run for about one second.
    for _ in 0..200 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let ctx = FieldContext {
        cellule: "perpignan",
        case_id: "8f1e6c2a-case",
        record_id: "note-0001",
        field: "body",
    };
    let key = DataKey::generate().expect("key");
    let raw_key_bytes = [7u8; 32];
    let raw = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &raw_key_bytes).expect("key"));
    println!(
        "{:<8} {:<8} {:>14} {:>14} {:>12} {:>8}",
        "size", "op", "cellule ops/s", "ring ops/s", "cellule MiB/s", "ratio"
    );
    for size in [1024usize, 16 * 1024] {
        let text: String = "situation confidentielle "
            .chars()
            .cycle()
            .take(size)
            .collect();
        let mut counter = 0u64;
        let raw_seal = measure(|| {
            counter += 1;
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&counter.to_be_bytes());
            let mut buf = text.as_bytes().to_vec();
            raw.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(b"aad"),
                &mut buf,
            )
            .expect("seal");
            black_box(buf);
        });
        let ours_seal = measure(|| {
            black_box(key.seal(&ctx, &text).expect("seal"));
        });
        let sealed = key.seal(&ctx, &text).expect("seal");
        let mut raw_sealed = text.as_bytes().to_vec();
        raw.seal_in_place_append_tag(
            Nonce::assume_unique_for_key([1u8; 12]),
            Aad::from(b"aad"),
            &mut raw_sealed,
        )
        .expect("seal");
        let raw_open = measure(|| {
            let mut buf = raw_sealed.clone();
            let plain = raw
                .open_in_place(
                    Nonce::assume_unique_for_key([1u8; 12]),
                    Aad::from(b"aad"),
                    &mut buf,
                )
                .expect("open");
            black_box(plain.len());
        });
        let ours_open = measure(|| {
            black_box(key.open(&ctx, &sealed).expect("open"));
        });
        let mib = |ops: f64| ops * size as f64 / (1024.0 * 1024.0);
        for (op, ours, base) in [
            ("encrypt", ours_seal, raw_seal),
            ("decrypt", ours_open, raw_open),
        ] {
            println!(
                "{:<8} {:<8} {:>14.0} {:>14.0} {:>12.1} {:>7.0}%",
                format!("{} KiB", size / 1024),
                op,
                ours,
                base,
                mib(ours),
                100.0 * ours / base
            );
        }
    }
}
