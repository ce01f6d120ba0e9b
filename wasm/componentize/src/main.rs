//! `snapbundle-componentize IN.wasm OUT.wasm`: wraps the guest's core module (built with
//! wit-bindgen, which embeds the world in a custom section) into a component, validated, with
//! `wit-component`. The same input gives the same bytes, which `scripts/build-wasm.sh --check`
//! relies on.

use std::process::ExitCode;

fn run(input: &str, output: &str) -> Result<usize, String> {
    let module = std::fs::read(input).map_err(|e| format!("reading {input}: {e}"))?;
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .and_then(|enc| enc.encode())
        .map_err(|e| format!("encoding {input} as a component: {e:#}"))?;
    std::fs::write(output, &component).map_err(|e| format!("writing {output}: {e}"))?;
    Ok(component.len())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: snapbundle-componentize IN.wasm OUT.wasm");
        return ExitCode::from(2);
    };
    match run(input, output) {
        Ok(n) => {
            println!("componentize: {output} ({n} bytes)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("componentize: {e}");
            ExitCode::FAILURE
        }
    }
}
