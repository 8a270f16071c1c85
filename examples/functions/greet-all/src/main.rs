//! A hosted function calling another: `{"names":[…]}` in, one greeting per name
//! out, each made by the function `$GREETER` (default `admin/greet`; any kind of
//! function taking `{"name"}` and answering `{"greeting"}`) through the platform, a
//! nested call of this call's tree. Deploy it with `--calls` naming the greeter
//! (and `--env GREETER=…` for another one); a failed nested call is reported, not a
//! crash.

use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    names: Vec<String>,
}

#[derive(Deserialize)]
struct Greeting {
    greeting: String,
}

fn main() {
    let input: Input = serde_json::from_reader(std::io::stdin()).unwrap_or_else(|e| {
        eprintln!("bad input: {e}");
        std::process::exit(2);
    });
    let greeter = std::env::var("GREETER").unwrap_or_else(|_| "admin/greet".into());
    let mut greetings = Vec::new();
    for name in input.names {
        let request = serde_json::json!({ "name": name }).to_string();
        match swb_guest::call(&greeter, request.as_bytes()) {
            Ok(out) => {
                let g: Greeting = serde_json::from_slice(&out).unwrap_or_else(|e| {
                    eprintln!("{greeter} answered no greeting: {e}");
                    std::process::exit(1);
                });
                greetings.push(g.greeting);
            }
            Err(e) => {
                eprintln!("{greeter} failed for {name}: {e}");
                std::process::exit(1);
            }
        }
    }
    serde_json::to_writer(std::io::stdout(), &greetings).expect("write stdout");
}
